package org.ublkmirror.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.leg.FaultyStore;
import org.ublkmirror.leg.Store;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The randomized model test: random writes (overlapping, multi-block, concurrent bursts),
 * flushes, FUA, discards, outages (detach, a failing secondary) and returns, and crashes of both
 * kinds in the middle of the write path, checked after every recovery against an in-memory model:
 * <ol>
 * <li>nothing acknowledged is lost (after power loss: nothing covered by a completed flush or FUA);</li>
 * <li>the legs end byte-identical;</li>
 * <li>resync and repair copy no more than DESIGN.md invariant 3 allows.</li>
 * </ol>
 * Seeds: {@code -Dmodel.seeds=N} (default 300; CI runs 2000), {@code -Dmodel.seed=S} for one.
 * A failure names its seed.
 */
class MirrorModelTest {
    static final int BS = 4096;
    static final int BLOCKS = 96;
    static final int REGION = 8;
    static final int MAX_REGIONS = 4;

    @Test
    void randomHistoriesKeepTheInvariants() throws Exception {
        String one = System.getProperty("model.seed");
        int seeds = Integer.getInteger("model.seeds", 300);
        long base = Long.getLong("model.base", 1);
        if (one != null) {
            run(Long.parseLong(one));
            return;
        }
        for (long s = base; s < base + seeds; s++) {
            run(s);
        }
    }

    void run(long seed) throws Exception {
        try {
            new History(seed).play();
        } catch (Throwable t) {
            throw new AssertionError("model test failed for seed " + seed + " (rerun with -Dmodel.seed=" + seed + "): " + t, t);
        }
    }

    /** One random history. */
    static final class History {
        final long seed;
        final Random rnd;
        final Map<Path, FaultyStore> stores = new HashMap<>();
        final Path pPath = Path.of("/model/p"), sPath = Path.of("/model/s");
        final MirrorConfig cfg = new MirrorConfig("m", pPath, sPath, null, 1, 60_000);
        UUID boot = UUID.randomUUID();
        Mirror m;
        /** For each block, the values it may hold: one after an ack; several while unflushed (power loss) or in doubt. */
        final List<Set<Integer>> may = new ArrayList<>();
        /** Values since the last completed flush, per block (for power loss). */
        final List<Set<Integer>> sinceFlush = new ArrayList<>();
        /** Blocks written since the last watermark write: the bound of a daemon-crash repair. */
        final Set<Long> sinceWatermark = new HashSet<>();
        /** Blocks written while the secondary was away: what a resync may copy. */
        final Set<Long> writtenDegraded = new HashSet<>();
        boolean degraded;
        int nextValue = 1;

        History(long seed) {
            this.seed = seed;
            this.rnd = new Random(seed);
            this.openFaults = new Random(seed * 0x9E3779B97F4A7C15L + 1);
            for (int i = 0; i < BLOCKS; i++) {
                may.add(new HashSet<>(Set.of(0)));
                sinceFlush.add(new HashSet<>(Set.of(0)));
            }
        }

        Mirror.Options opts() {
            Mirror.Options o = new Mirror.Options();
            o.bootId = boot;
            o.maxActiveRegions = MAX_REGIONS;
            o.storeOpener = p -> stores.get(Path.of(p)).reopen();
            o.trackPersistMillis = 0;
            o.watermarkTickMillis = 0;
            o.clock = () -> 1_700_000_000_000L;
            return o;
        }

        final boolean trace = Boolean.getBoolean("model.trace");
        /** Faults at a restart's open (a stream of its own: the main history's choices do not shift). */
        final Random openFaults;

        void t(String fmt, Object... args) {
            if (trace) System.out.printf("[seed %d] " + fmt + "%n", prepend(seed, args));
        }

        static Object[] prepend(Object a, Object[] rest) {
            Object[] o = new Object[rest.length + 1];
            o[0] = a;
            System.arraycopy(rest, 0, o, 1, rest.length);
            return o;
        }

        void play() throws Exception {
            stores.put(pPath, new FaultyStore("p", 4 << 20));
            stores.put(sPath, new FaultyStore("s", 4 << 20));
            Mirror.create(cfg, (long) BLOCKS * BS, BS, false, p -> stores.get(Path.of(p)).reopen(), 16, REGION);
            m = Mirror.open(cfg, opts());
            int ops = 40 + rnd.nextInt(40);
            for (int i = 0; i < ops; i++) {
                int op = rnd.nextInt(100);
                if (op < 45) write(rnd.nextInt(10) == 0);
                else if (op < 55) burst();
                else if (op < 63) flush();
                else if (op < 66) discard();
                else if (op < 70) watermark();
                else if (op < 75) outage();
                else if (op < 80) secondaryFails();
                else if (op < 86) returnAndResync();
                else if (op < 93) crash(false);
                else crash(true);
            }
            returnAndResync();
            finalCheck();
            m.close();
        }

        static byte[] block(int value) {
            byte[] b = new byte[BS];
            ByteBuffer.wrap(b).putInt(0, value).putInt(BS - 4, value);
            for (int i = 4; i < 64; i++) b[i] = (byte) (value * 31 + i);
            return b;
        }

        static int valueOf(ByteBuffer b, int off) {
            int v = b.getInt(off);
            if (v != b.getInt(off + BS - 4)) return -1; // torn block: never acceptable
            return v;
        }

        void noteAcked(long start, int n, int[] values, boolean fua) {
            for (int i = 0; i < n; i++) {
                int blk = (int) start + i;
                may.get(blk).clear();
                may.get(blk).add(values[i]);
                if (fua) sinceFlush.get(blk).clear();
                sinceFlush.get(blk).add(values[i]);
                sinceWatermark.add((long) blk);
                if (degraded) writtenDegraded.add((long) blk);
            }
        }

        /** n new values, never written before: a block's value says which write put it there. */
        int[] freshValues(int n) {
            int[] v = new int[n];
            for (int i = 0; i < n; i++) v[i] = nextValue++;
            return v;
        }

        static ByteBuffer blocks(int[] values) {
            ByteBuffer buf = ByteBuffer.allocateDirect(values.length * BS);
            for (int v : values) buf.put(block(v));
            return buf.flip();
        }

        void write(boolean fua) throws IOException {
            int n = 1 + rnd.nextInt(6);
            long start = rnd.nextInt(BLOCKS - n + 1);
            int[] values = freshValues(n);
            ByteBuffer buf = blocks(values);
            m.write(start * BS, buf, fua);
            t("write %d+%d values %s fua=%s state=%s", start, n, Arrays.toString(values), fua, m.state());
            noteAcked(start, n, values, fua);
        }

        /** Concurrent overlapping writes: any order is fine, but both legs must get the same one. */
        void burst() throws Exception {
            int k = 2 + rnd.nextInt(4);
            ExecutorService ex = Executors.newFixedThreadPool(k);
            try {
                List<Future<?>> fs = new ArrayList<>();
                Map<Long, Set<Integer>> candidates = new HashMap<>();
                for (int j = 0; j < k; j++) {
                    int n = 1 + rnd.nextInt(4);
                    long start = rnd.nextInt(24); // a small window: overlaps are the point
                    ByteBuffer buf = ByteBuffer.allocateDirect(n * BS);
                    for (int i = 0; i < n; i++) {
                        int v = nextValue++;
                        buf.put(block(v));
                        candidates.computeIfAbsent(start + i, x -> new HashSet<>()).add(v);
                    }
                    buf.flip();
                    fs.add(ex.submit(() -> {
                        m.write(start * BS, buf, false);
                        return null;
                    }));
                }
                for (Future<?> f : fs) f.get();
                // every block now holds the value of one of its writers; learn which from the primary
                for (Map.Entry<Long, Set<Integer>> e : candidates.entrySet()) {
                    int blk = e.getKey().intValue();
                    ByteBuffer b = ByteBuffer.allocateDirect(BS);
                    m.read((long) blk * BS, b);
                    int v = valueOf(b, 0);
                    assertTrue(e.getValue().contains(v), "block " + blk + " holds " + v + ", not one of " + e.getValue());
                    noteAcked(blk, 1, new int[] {v}, false);
                    for (int c : e.getValue()) sinceFlush.get(blk).add(c);
                }
            } finally {
                ex.shutdownNow();
            }
        }

        void flush() throws IOException {
            m.flush();
            t("flush");
            for (int i = 0; i < BLOCKS; i++) {
                sinceFlush.get(i).clear();
                sinceFlush.get(i).addAll(may.get(i));
            }
        }

        void discard() throws IOException {
            int n = 1 + rnd.nextInt(4);
            long start = rnd.nextInt(BLOCKS - n + 1);
            m.discard(start * BS, (long) n * BS);
            t("discard %d+%d", start, n);
            noteAcked(start, n, new int[n], false);
        }

        void watermark() throws IOException {
            m.forker().writeWatermark();
            if (m.forker().window().outstandingCount() == m.forker().pendingTrackedCount() && m.forker().pendingTrackedCount() == 0) {
                sinceWatermark.clear();
            }
        }

        void outage() {
            if (!degraded) {
                t("detach");
                m.detach();
                degraded = true;
            }
        }

        void secondaryFails() throws IOException {
            if (degraded) return;
            stores.get(sPath).setOffline(true);
            t("secondary fails");
            degraded = true;
            write(false); // the failure is discovered here; the write still succeeds, tracked
        }

        void returnAndResync() throws IOException {
            FaultyStore s = stores.get(sPath);
            s.setOffline(false);
            if (m.state() == Mirror.State.MIRRORED) return;
            s.resetCounters();
            long expectBound = writtenDegraded.size() + m.dirtyBlocks();
            t("attach (dirty %d)", m.dirtyBlocks());
            ResyncRunner r = m.attach(0, false);
            assertTrue(r.awaitDone(60_000), "resync did not finish");
            assertTrue(r.succeeded(), "resync failed: " + r.failure());
            long copied = s.bytesWritten() / BS;
            // minimal: blocks written while away (plus what a crash left dirty), and nothing else;
            // metadata writes (journal, intents, superblocks, log) are not data blocks
            assertTrue(r.copiedBlocks() <= expectBound, "resync copied " + r.copiedBlocks() + " blocks, bound " + expectBound);
            assertTrue(copied >= r.copiedBlocks(), "secondary saw fewer writes than the resync reports");
            assertEquals(Mirror.State.MIRRORED, m.state());
            degraded = false;
            writtenDegraded.clear();
            assertLegsIdentical();
        }

        void crash(boolean powerLoss) throws Exception {
            // die in the middle of a write: after a random number of store writes
            FaultyStore.CrashSwitch sw = new FaultyStore.CrashSwitch(rnd.nextInt(6));
            stores.get(pPath).setCrashSwitch(sw);
            stores.get(sPath).setCrashSwitch(sw);
            int n = 1 + rnd.nextInt(4);
            long start = rnd.nextInt(BLOCKS - n + 1);
            int[] values = freshValues(n);
            ByteBuffer buf = blocks(values);
            boolean acked;
            try {
                m.write(start * BS, buf, false);
                acked = !sw.crashed();
            } catch (IOException e) {
                acked = false;
            }
            for (int i = 0; i < n; i++) {
                int blk = (int) start + i;
                if (acked) {
                    may.get(blk).clear(); // acknowledged: the old value may only come back with power loss (sinceFlush)
                }
                may.get(blk).add(values[i]);
                sinceFlush.get(blk).add(values[i]);
                sinceWatermark.add((long) blk);
                if (degraded) writtenDegraded.add((long) blk);
            }
            t("crash %s during write %d+%d values %s acked=%s after %s", powerLoss ? "power-loss" : "daemon", start, n,
                    Arrays.toString(values), acked, sw);
            m.abandon();
            boolean sOffline = stores.get(sPath).isOffline();
            for (Path p : List.of(pPath, sPath)) {
                FaultyStore old = stores.get(p);
                FaultyStore next = powerLoss ? old.powerLoss(rnd) : old.daemonCrash();
                next.setOffline(p.equals(sPath) && sOffline);
                stores.put(p, next);
            }
            if (powerLoss) {
                boot = UUID.randomUUID();
                for (int i = 0; i < BLOCKS; i++) {
                    may.get(i).addAll(sinceFlush.get(i));
                }
            }
            long boundDaemon = sinceWatermark.size();
            // the secondary may fail at the restart: unreachable, or its writes failing after k
            // successes (the open meets the failure at one of its steps); its own random stream,
            // so the histories of the other seeds' choices stay as they were
            int atOpen = sOffline ? 0 : openFaults.nextInt(8); // 0-5: fine, 6: unreachable, 7: writes fail
            FaultyStore sNow = stores.get(sPath);
            if (atOpen == 6) sNow.setOffline(true);
            if (atOpen == 7) sNow.failWritesAfter(openFaults.nextInt(6));
            m = Mirror.open(cfg, opts());
            if (atOpen == 6) sNow.setOffline(false); // back for the next attach; the mirror does not know yet
            if (atOpen == 7) sNow.failWritesAfter(-1);
            boolean sUnverified = atOpen >= 6 && m.state() != Mirror.State.MIRRORED;
            if (sUnverified) {
                // an unverified secondary that was in sync: the intent regions are in doubt too
                boundDaemon += (long) 2 * MAX_REGIONS * REGION + 2L * REGION;
            }
            t("restart with the secondary %s", atOpen == 6 ? "unreachable" : atOpen == 7 ? "failing writes" : "as it was");
            RecoveryReport rep = m.recovery();
            t("recovered: %s, state %s", rep.summary(), m.state());
            if (!powerLoss) {
                assertEquals("daemon-crash", rep.cause());
                assertTrue(rep.blocksRepaired() + rep.blocksMarkedDirty() <= boundDaemon,
                        "daemon-crash repair " + rep.summary() + " exceeds the in-flight bound " + boundDaemon);
            } else {
                assertEquals("power-loss", rep.cause());
                long bound = boundDaemon + (long) 2 * MAX_REGIONS * REGION + 2L * REGION;
                assertTrue(rep.blocksRepaired() + rep.blocksMarkedDirty() <= bound,
                        "power-loss repair " + rep.summary() + " exceeds the intent bound " + bound);
            }
            sinceWatermark.clear();
            // what the mirror now shows is what it must keep: narrow the model to it
            checkContent(true);
            if (m.state() == Mirror.State.MIRRORED) {
                assertLegsIdentical();
            } else {
                degraded = true;
            }
        }

        void checkContent(boolean narrow) throws IOException {
            ByteBuffer b = ByteBuffer.allocateDirect(BLOCKS * BS);
            m.read(0, b);
            for (int i = 0; i < BLOCKS; i++) {
                int v = valueOf(b, i * BS);
                assertTrue(may.get(i).contains(v), "block " + i + " holds " + v + ", expected one of " + may.get(i)
                        + " (an acknowledged write was lost or a block torn)");
                if (narrow) {
                    may.get(i).clear();
                    may.get(i).add(v);
                    sinceFlush.get(i).add(v);
                }
            }
        }

        void assertLegsIdentical() {
            FaultyStore p = stores.get(pPath), s = stores.get(sPath);
            long off = m.primary().superblock().dataOffset;
            for (int i = 0; i < BLOCKS; i++) {
                if (!p.sameBytes(off + (long) i * BS, s, off + (long) i * BS, BS)) {
                    ByteBuffer pi = ByteBuffer.wrap(p.image()), si = ByteBuffer.wrap(s.image());
                    fail("legs differ at block " + i + ": primary holds " + valueOf(pi, (int) (off + (long) i * BS))
                            + ", secondary " + valueOf(si, (int) (off + (long) i * BS)) + " (state " + m.state() + ")");
                }
            }
        }

        void finalCheck() throws IOException {
            checkContent(false);
            assertLegsIdentical();
        }
    }
}
