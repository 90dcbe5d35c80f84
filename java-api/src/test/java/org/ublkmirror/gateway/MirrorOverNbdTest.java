package org.ublkmirror.gateway;

import org.junit.jupiter.api.Test;
import org.ublkmirror.leg.FaultyStore;
import org.ublkmirror.leg.Store;
import org.ublkmirror.mirror.Mirror;
import org.ublkmirror.mirror.MirrorConfig;
import org.ublkmirror.mirror.ResyncRunner;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.UUID;
import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The engine with its secondary behind the gateway: a stalled gateway turns into degraded mode
 * within the I/O timeout without failing application writes; attach reconnects and resyncs.
 * (The engine's own reconnect policy is not here: attach is called by the test.)
 */
class MirrorOverNbdTest {
    @Test
    void aStalledGatewayDegradesTheMirrorAndAttachResyncsOverNbd() throws Exception {
        Legs legs = Legs.of("n", true);
        try (NbdServer server = legs.server()) {
            NbdStore.Options o = NbdStore.Options.defaults().withIoTimeout(Duration.ofMillis(500));
            Function<String, Store> opener = path -> {
                if (path.equals(legs.cfg().primary())) return legs.p().reopen();
                for (int i = 0; ; i++) { // the export may still be held by a dead connection's stale requests
                    try {
                        return NbdStore.connect("127.0.0.1", server.port(), "sec", o);
                    } catch (IOException e) {
                        if (i >= 100) throw new UncheckedIOException(e);
                        try {
                            Thread.sleep(50);
                        } catch (InterruptedException ie) {
                            throw new IllegalStateException(ie);
                        }
                    }
                }
            };
            Mirror.create(legs.cfg(), 256 * 4096, 4096, false, opener, 16, 8);
            Mirror.Options mo = options(opener);
            Mirror m = Mirror.open(legs.cfg(), mo);
            try {
                assertEquals(Mirror.State.MIRRORED, m.state());
                m.write(0, fill(8, 1), false);
                legs.gw().stall();
                long t0 = System.nanoTime();
                m.write(16 * 4096, fill(4, 2), false); // must not fail: the primary has it, the tracker too
                long ms = (System.nanoTime() - t0) / 1_000_000;
                assertEquals(Mirror.State.DEGRADED, m.state());
                assertTrue(ms < 3000, "degraded after " + ms + " ms with a 500 ms I/O timeout");
                m.write(100 * 4096, fill(2, 3), true);
                m.flush();
                assertTrue(m.dirtyBlocks() >= 6, "blocks written during the outage are tracked: " + m.dirtyBlocks());
                legs.gw().release();
                // the return, live: attach drops the failed connection and opens a new one
                ResyncRunner r = m.attach(0, false);
                assertTrue(r.awaitDone(20_000), "resync finished");
                assertTrue(r.succeeded(), String.valueOf(r.failure()));
                assertEquals(Mirror.State.MIRRORED, m.state());
                ByteBuffer a = ByteBuffer.allocate(256 * 4096), b = ByteBuffer.allocate(256 * 4096);
                m.primary().data().read(0, a);
                m.secondary().data().read(0, b);
                assertArrayEquals(a.array(), b.array(), "legs identical after the resync over NBD");
                // and the bytes are in the gateway's store itself
                ByteBuffer viaGateway = ByteBuffer.allocate(4096);
                m.secondary().store().read(m.secondary().superblock().dataOffset + 100 * 4096, viaGateway);
                assertEquals(3 * 1000, viaGateway.getInt(0));
            } finally {
                m.close();
            }
            // a clean close over NBD: reopening finds nothing to repair
            Mirror m2 = Mirror.open(legs.cfg(), mo);
            try {
                assertEquals("clean", m2.recovery().cause());
                assertEquals(Mirror.State.MIRRORED, m2.state());
            } finally {
                m2.close();
            }
        } finally {
            legs.gw().release();
        }
    }

    /**
     * The gateway answers the handshake and reads, but its writes hang while the mirror opens
     * (after an unclean run, so the open has repair to copy): the open does not fail, it starts
     * degraded within about the I/O timeout, with the repair set tracked; once the gateway's disk
     * is back an attach resyncs and the legs are identical.
     */
    @Test
    void aGatewayHangingOnWritesDuringOpenGivesADegradedStartThatResyncs() throws Exception {
        Legs legs = Legs.of("h", false);
        try (NbdServer server = legs.server()) {
            NbdStore.Options o = NbdStore.Options.defaults().withIoTimeout(Duration.ofMillis(500));
            FaultyStore[] prim = {legs.p()};
            Function<String, Store> opener = path -> {
                if (path.equals(legs.cfg().primary())) return prim[0].reopen();
                try {
                    return NbdStore.connect("127.0.0.1", server.port(), "sec", o);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            };
            Mirror.create(legs.cfg(), 256 * 4096, 4096, false, opener, 16, 8);
            Mirror.Options mo = options(opener);
            Mirror m = Mirror.open(legs.cfg(), mo);
            assertEquals(Mirror.State.MIRRORED, m.state());
            m.write(0, fill(8, 1), false);
            m.flush();
            m.write(40 * 4096, fill(4, 2), false); // in flight at the crash: live tags
            m.abandon();
            m.secondary().store().close(); // the dead daemon's socket is closed by its kernel
            prim[0] = legs.p().daemonCrash();
            legs.gw().stall();
            long t0 = System.nanoTime();
            Mirror m2 = Mirror.open(legs.cfg(), mo);
            long ms = (System.nanoTime() - t0) / 1_000_000;
            try {
                assertEquals(Mirror.State.DEGRADED, m2.state(), "a gateway hanging on writes at open: degraded start");
                assertTrue(ms < 5000, "open took " + ms + " ms with a 500 ms I/O timeout");
                String why = m2.forker().degradedReason();
                assertTrue(why.startsWith("secondary unreachable at start: ") && why.contains("I/O timeout"), why);
                assertTrue(m2.dirtyBlocks() >= 4, "the crash's repair set is tracked: " + m2.dirtyBlocks());
                m2.write(100 * 4096, fill(2, 3), true);
                legs.gw().release();
                ResyncRunner r = null;
                for (int i = 0; i < 100 && r == null; i++) { // the gateway frees the export once the stale writes end
                    try {
                        r = m2.attach(0, false);
                    } catch (IOException e) {
                        Thread.sleep(50);
                    }
                }
                assertNotNull(r, "attach after the gateway's disk came back");
                assertTrue(r.awaitDone(20_000), "resync finished");
                assertTrue(r.succeeded(), String.valueOf(r.failure()));
                assertEquals(Mirror.State.MIRRORED, m2.state());
                ByteBuffer a = ByteBuffer.allocate(256 * 4096), b = ByteBuffer.allocate(256 * 4096);
                m2.primary().data().read(0, a);
                m2.secondary().data().read(0, b);
                assertArrayEquals(a.array(), b.array(), "legs identical after the degraded start and the resync");
            } finally {
                m2.close();
            }
        } finally {
            legs.gw().release();
        }
    }

    /**
     * An operator's attach while the link monitor's probe holds the gateway's single-writer export
     * (its superblock read stalled in the gateway): the attach waits for the probe to close its
     * connection instead of being refused "already in use" (the race a root test met in CI), then
     * resyncs; a probe after the attach does not connect.
     */
    @Test
    void anAttachDuringAProbeWaitsForItInsteadOfBeingRefused() throws Exception {
        Legs legs = Legs.of("r", true);
        try (NbdServer server = legs.server()) {
            NbdStore.Options o = NbdStore.Options.defaults().withIoTimeout(Duration.ofSeconds(5));
            java.util.concurrent.atomic.AtomicInteger connects = new java.util.concurrent.atomic.AtomicInteger();
            Function<String, Store> opener = path -> {
                if (path.equals(legs.cfg().primary())) return legs.p().reopen();
                try { // no retry: as the daemon's own opener, a refusal is an error
                    Store st = NbdStore.connect("127.0.0.1", server.port(), "sec", o);
                    connects.incrementAndGet();
                    return st;
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            };
            Mirror.create(legs.cfg(), 256 * 4096, 4096, false, opener, 16, 8);
            Mirror m = Mirror.open(legs.cfg(), options(opener));
            ExecutorService ex = Executors.newFixedThreadPool(2);
            try {
                m.secondary().store().close(); // the link lost: the old connection is gone
                m.write(8 * 4096, fill(4, 5), false); // degrades the mirror; tracked
                assertEquals(Mirror.State.DEGRADED, m.state());
                legs.gw().stall();
                Future<String> probe = ex.submit(m::probeSecondary);
                long t0 = System.nanoTime();
                while (server.connections() == 0 && System.nanoTime() - t0 < 5_000_000_000L) Thread.sleep(5);
                Thread.sleep(100); // the probe's connection holds the export; its superblock read waits in the gateway
                Future<ResyncRunner> attach = ex.submit(() -> m.attach(0, false));
                Thread.sleep(200);
                assertFalse(attach.isDone(), "the attach waits for the probe");
                legs.gw().release();
                assertTrue(probe.get(10, TimeUnit.SECONDS).contains("answers (generation"));
                ResyncRunner r = attach.get(10, TimeUnit.SECONDS);
                assertTrue(r.awaitDone(20_000), "resync finished");
                assertTrue(r.succeeded(), String.valueOf(r.failure()));
                assertEquals(Mirror.State.MIRRORED, m.state());
                int before = connects.get();
                assertEquals("attached", m.probeSecondary());
                assertEquals(before, connects.get(), "a probe after the attach does not connect");
                ByteBuffer a = ByteBuffer.allocate(256 * 4096), b = ByteBuffer.allocate(256 * 4096);
                m.primary().data().read(0, a);
                m.secondary().data().read(0, b);
                assertArrayEquals(a.array(), b.array(), "legs identical after the resync");
            } finally {
                legs.gw().release();
                ex.shutdownNow();
                m.close();
            }
        }
    }

    /** The legs of these tests: the primary in memory, the secondary in memory behind a gateway whose store can stall. */
    private record Legs(FaultyStore p, NbdGatewayTest.StallingStore gw, MirrorConfig cfg, NbdServer server) {
        static Legs of(String name, boolean readsStall) throws IOException {
            NbdGatewayTest.StallingStore gw = new NbdGatewayTest.StallingStore(new FaultyStore("s", 8 << 20), readsStall);
            MirrorConfig cfg = new MirrorConfig(name, Path.of("/" + name + "/p"), Path.of("/" + name + "/s"), null, 1, 60_000);
            return new Legs(new FaultyStore("p", 8 << 20), gw, cfg, NbdServer.start(0, Map.of("sec", Export.of(gw))));
        }
    }

    static ByteBuffer fill(int blocks, int v) {
        ByteBuffer b = ByteBuffer.allocateDirect(blocks * 4096);
        for (int i = 0; i < blocks * 4096; i += 4) b.putInt(i, v * 1000 + i);
        return b;
    }

    /** Options for a mirror opened through {@code opener}: a fresh boot, no background ticks. */
    static Mirror.Options options(Function<String, Store> opener) {
        Mirror.Options mo = new Mirror.Options();
        mo.storeOpener = opener;
        mo.bootId = UUID.randomUUID();
        mo.watermarkTickMillis = 0;
        mo.trackPersistMillis = 0;
        return mo;
    }
}
