package org.ublkmirror.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.leg.FaultyStore;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Random;
import java.util.TreeSet;
import java.util.UUID;

import static org.junit.jupiter.api.Assertions.*;

/**
 * A mirror whose secondary is unreachable, or fails (writes refused, as a hung gateway's time
 * out), while the mirror opens: the open succeeds degraded (as md starts a degraded array), the
 * outage is on record, writes are tracked, and an attach resyncs what the secondary may lack:
 * the writes since, and after an unclean previous run its repair set (live tags, intent regions).
 */
class DegradedStartTest {
    static final int BS = 4096, BLOCKS = 256, REGION = 8;
    final Map<String, FaultyStore> stores = new HashMap<>();
    final MirrorConfig cfg = new MirrorConfig("d", Path.of("/d/p"), Path.of("/d/s"), null, 1, 60_000);
    /** What each block must hold on the primary (the acknowledged writes). */
    final byte[][] model = new byte[BLOCKS][BS];
    UUID boot = UUID.randomUUID();

    Mirror.Options opts() {
        Mirror.Options o = new Mirror.Options();
        o.bootId = boot;
        o.maxActiveRegions = 4;
        o.storeOpener = spec -> stores.get(spec).reopen();
        o.trackPersistMillis = 0;
        o.watermarkTickMillis = 0;
        return o;
    }

    FaultyStore p() {
        return stores.get(cfg.primary());
    }

    FaultyStore s() {
        return stores.get(cfg.secondary());
    }

    void create() throws Exception {
        for (byte[] b : model) java.util.Arrays.fill(b, (byte) 0);
        stores.put(cfg.primary(), new FaultyStore("p", 4 << 20));
        stores.put(cfg.secondary(), new FaultyStore("s", 4 << 20));
        Mirror.create(cfg, (long) BLOCKS * BS, BS, false, spec -> stores.get(spec).reopen(), 16, REGION);
    }

    void write(Mirror m, Random r, long block, int n, boolean fua) throws Exception {
        ByteBuffer b = ByteBuffer.allocateDirect(n * BS);
        for (int i = 0; i < n; i++) {
            byte[] d = new byte[BS];
            r.nextBytes(d);
            model[(int) block + i] = d;
            b.put(d);
        }
        m.write(block * BS, b.flip(), fua);
    }

    void assertPrimaryHoldsEveryWrite(Mirror m) throws Exception {
        ByteBuffer b = ByteBuffer.allocateDirect(BLOCKS * BS);
        m.read(0, b);
        for (int i = 0; i < BLOCKS; i++) {
            byte[] got = new byte[BS];
            b.get(i * BS, got);
            assertArrayEquals(model[i], got, "block " + i + ": an acknowledged write is lost");
        }
    }

    void assertLegsIdentical(Mirror m) {
        long off = m.primary().superblock().dataOffset;
        for (int i = 0; i < BLOCKS; i++) {
            assertTrue(p().sameBytes(off + (long) i * BS, s(), off + (long) i * BS, BS), "legs differ at block " + i);
        }
    }

    /** Attaches, waits for the resync, checks legs identical; returns the blocks it copied. */
    long attachAndResync(Mirror m) throws Exception {
        ResyncRunner r = m.attach(0, false);
        assertTrue(r.awaitDone(30_000), "resync finished");
        assertTrue(r.succeeded(), String.valueOf(r.failure()));
        assertEquals(Mirror.State.MIRRORED, m.state());
        assertEquals(0, m.dirtyBlocks());
        assertLegsIdentical(m);
        return r.copiedBlocks();
    }

    @Test
    void unreachableAtStartThenStoppedCleanlyWhileDegradedStillResyncsTheOutage() throws Exception {
        create();
        Random r = new Random(1);
        s().setOffline(true);
        Mirror m = Mirror.open(cfg, opts());
        TreeSet<Long> written = new TreeSet<>();
        try {
            assertEquals(Mirror.State.DEGRADED, m.state());
            assertNull(m.secondary());
            assertTrue(m.forker().degradedReason().startsWith("secondary unreachable at start: s: offline"), m.forker().degradedReason());
            assertNotEquals(0, m.primary().superblock().bitmapGen, "the outage is on record before any write");
            for (long b : new long[] {3, 4, 5, 40, 200}) {
                write(m, r, b, 1, false);
                written.add(b);
            }
            m.flush();
            assertEquals(written.size(), m.dirtyBlocks());
        } finally {
            m.close();
        }
        // a clean stop while degraded, then a start with the secondary back: it is behind, not in sync
        s().setOffline(false);
        Mirror m2 = Mirror.open(cfg, opts());
        try {
            assertEquals("clean", m2.recovery().cause());
            assertEquals(Mirror.State.DEGRADED, m2.state(), "the secondary sat out the last run: still behind");
            assertEquals(written.size(), m2.dirtyBlocks());
            assertEquals(written.size(), attachAndResync(m2), "the resync copies exactly the blocks written while it was away");
            assertPrimaryHoldsEveryWrite(m2);
        } finally {
            m2.close();
        }
    }

    @Test
    void unreachableAtStartThenADaemonCrashStillResyncsTheOutage() throws Exception {
        create();
        Random r = new Random(2);
        s().setOffline(true);
        Mirror m = Mirror.open(cfg, opts());
        for (long b : new long[] {7, 8, 100}) write(m, r, b, 1, false);
        m.flush();
        write(m, r, 9, 2, false); // acknowledged, not flushed: the page cache keeps it across a daemon crash
        m.abandon();
        stores.put(cfg.primary(), p().daemonCrash());
        stores.put(cfg.secondary(), s().daemonCrash());
        Mirror m2 = Mirror.open(cfg, opts());
        try {
            assertEquals("daemon-crash", m2.recovery().cause());
            assertNotEquals(Mirror.State.MIRRORED, m2.state(), "the secondary is behind: " + m2.state());
            long copied = attachAndResync(m2);
            assertTrue(copied >= 5, "the outage's blocks are copied: " + copied);
            assertPrimaryHoldsEveryWrite(m2);
        } finally {
            m2.close();
        }
    }

    /**
     * The previous run ended uncleanly while mirrored (live tags, unflushed writes); at the next
     * start the secondary answers but its writes fail after k successes, so the open meets the
     * failure at each of its steps in turn (repair copy, its flush, superblock, journal). Every
     * start succeeds; a degraded one marks the repair set dirty, and the resync makes the legs
     * identical, with every acknowledged write on the primary.
     */
    @Test
    void aSecondaryFailingAtAnyPointOfTheOpenGivesADegradedStartThatConverges() throws Exception {
        for (boolean powerLoss : new boolean[] {false, true}) {
            for (int k = 0; k < 8; k++) {
                String what = (powerLoss ? "power loss" : "daemon crash") + ", secondary writes fail after " + k;
                create();
                boot = UUID.randomUUID();
                Random r = new Random(k * 7L + (powerLoss ? 1 : 0));
                Mirror m = Mirror.open(cfg, opts());
                assertEquals(Mirror.State.MIRRORED, m.state());
                for (int i = 0; i < 40; i++) write(m, r, r.nextInt(BLOCKS - 4), 1 + r.nextInt(4), r.nextInt(8) == 0);
                m.flush();
                for (int i = 0; i < 10; i++) write(m, r, r.nextInt(BLOCKS - 4), 1 + r.nextInt(4), false); // live tags, unflushed
                m.abandon();
                if (powerLoss) {
                    // unflushed writes may be lost on both legs: the model follows the primary as it comes back
                    stores.put(cfg.primary(), p().powerLoss(r));
                    stores.put(cfg.secondary(), s().powerLoss(r));
                    boot = UUID.randomUUID();
                } else {
                    stores.put(cfg.primary(), p().daemonCrash());
                    stores.put(cfg.secondary(), s().daemonCrash());
                }
                s().failWritesAfter(k);
                Mirror m2 = Mirror.open(cfg, opts());
                try {
                    assertEquals(powerLoss ? "power-loss" : "daemon-crash", m2.recovery().cause(), what);
                    if (powerLoss) {
                        ByteBuffer b = ByteBuffer.allocateDirect(BLOCKS * BS);
                        m2.read(0, b);
                        for (int i = 0; i < BLOCKS; i++) b.get(i * BS, model[i]);
                    }
                    assertPrimaryHoldsEveryWrite(m2);
                    if (m2.state() != Mirror.State.MIRRORED) {
                        assertEquals(Mirror.State.DEGRADED, m2.state(), what);
                        String why = m2.forker().degradedReason();
                        assertTrue(why != null && why.contains("write failed (injected fault)"), what + ": " + why);
                    }
                    for (int i = 0; i < 10; i++) write(m2, r, r.nextInt(BLOCKS - 4), 1 + r.nextInt(4), false);
                    m2.flush();
                    s().failWritesAfter(-1);
                    if (m2.state() != Mirror.State.MIRRORED) attachAndResync(m2);
                    assertLegsIdentical(m2);
                    assertPrimaryHoldsEveryWrite(m2);
                } catch (AssertionError | RuntimeException e) {
                    throw new AssertionError(what + ": " + e.getMessage(), e);
                } finally {
                    m2.close();
                }
            }
        }
    }

    /**
     * A watermark block the secondary's journal cannot take drops the secondary, as a write's
     * journal entry does: left "mirrored" with a stale journal, a later crash would repair its old
     * entries again (the model test's seed 36 met it at the watermark write that ends an open).
     */
    @Test
    void aWatermarkTheSecondaryJournalRefusesDegradesTheMirror() throws Exception {
        create();
        Random r = new Random(5);
        try (Mirror m = Mirror.open(cfg, opts())) {
            for (int i = 0; i < 20; i++) write(m, r, r.nextInt(BLOCKS - 4), 1 + r.nextInt(4), false);
            assertEquals(Mirror.State.MIRRORED, m.state());
            s().failWritesAfter(0);
            m.forker().writeWatermark();
            assertEquals(Mirror.State.DEGRADED, m.state(), "a refused watermark block leaves the secondary behind");
            String why = m.forker().degradedReason();
            assertTrue(why != null && why.startsWith("secondary tag journal write failed") && why.contains("injected fault"), why);
            write(m, r, 100, 4, false);
            assertTrue(m.dirtyBlocks() >= 4, "writes after it are tracked: " + m.dirtyBlocks());
            s().failWritesAfter(-1);
            attachAndResync(m);
            assertLegsIdentical(m);
            assertPrimaryHoldsEveryWrite(m);
        }
    }
}
