package org.ublkmirror.gateway;

import org.junit.jupiter.api.Test;
import org.ublkmirror.leg.FaultyStore;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.Store;
import org.ublkmirror.link.LinkConfig;
import org.ublkmirror.link.LinkMonitor;
import org.ublkmirror.link.ResyncPolicy;
import org.ublkmirror.mirror.Mirror;
import org.ublkmirror.mirror.MirrorConfig;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.UUID;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The return after an outage with a third-party server as the secondary's gateway: qemu-nbd is
 * killed under a running mirror and started again; the link monitor (policy auto) reconnects and
 * resyncs by itself, and qemu-nbd's file ends up identical to the primary.
 */
class QemuNbdLinkTest {
    static final int BS = 4096, BLOCKS = 2048;

    @Test
    void qemuNbdKilledAndRestartedTheMirrorReturnsByItself() throws Exception {
        Path dir = Files.createTempDirectory("nbd-qemu-link");
        Path file = dir.resolve("sec.img");
        Process q = null;
        Mirror m = null;
        LinkMonitor mon = null;
        try {
            try (FileStore f = FileStore.createSparse(file, Leg.metadataBytes(BLOCKS, 16) + (long) BLOCKS * BS)) {
                // qemu-nbd owns it from here
            }
            int port = NbdInteropTest.freePort();
            q = NbdInteropTest.qemuNbd(file, port);
            FaultyStore p = new FaultyStore("p", Leg.metadataBytes(BLOCKS, 16) + (long) BLOCKS * BS);
            MirrorConfig cfg = new MirrorConfig("q", Path.of("/q/p"), Path.of("/q/s"), null, 1, 60_000);
            NbdStore.Options o = NbdStore.Options.defaults().withIoTimeout(Duration.ofSeconds(3)).withConnectTimeout(Duration.ofMillis(500));
            java.util.function.Function<String, Store> opener = spec -> {
                if (spec.equals(cfg.primary())) return p.reopen();
                try {
                    return NbdStore.connect("127.0.0.1", port, "exp", o);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            };
            Mirror.create(cfg, (long) BLOCKS * BS, BS, false, opener, 16, 8);
            Mirror.Options mo = new Mirror.Options();
            mo.storeOpener = opener;
            mo.bootId = UUID.randomUUID();
            m = Mirror.open(cfg, mo);
            mon = new LinkMonitor(m, new LinkConfig(ResyncPolicy.AUTO, Duration.ofSeconds(3), Duration.ofMillis(500),
                    Duration.ofMillis(100), Duration.ofMillis(50), Duration.ofMillis(500), 0), s -> System.err.println("link: " + s)).start();
            m.write(0, fill(64, 1), false);
            m.flush();

            q.destroyForcibly();
            q.waitFor();
            for (int i = 0; i < 32; i++) m.write((100 + i * 40L) * BS, fill(8, 2 + i), false); // never fails
            m.flush();
            assertEquals(Mirror.State.DEGRADED, m.state());
            assertTrue(m.dirtyBlocks() >= 256);

            q = NbdInteropTest.qemuNbd(file, port);
            Mirror mm = m;
            long end = System.currentTimeMillis() + 20_000;
            while (!(mm.state() == Mirror.State.MIRRORED && mm.dirtyBlocks() == 0)) {
                if (System.currentTimeMillis() > end) fail("not back within 20 s: " + mon.status());
                Thread.sleep(20);
            }
            assertEquals(LinkMonitor.State.CONNECTED, mon.state());
            assertTrue(m.resyncedBlocks() <= m.trackedWriteBlocks() + m.supersetBlocks(),
                    m.resyncedBlocks() + " resynced, " + m.trackedWriteBlocks() + " tracked + " + m.supersetBlocks() + " superset");
            ByteBuffer a = ByteBuffer.allocate(BLOCKS * BS);
            m.primary().data().read(0, a);
            long dataOffset = m.secondary().superblock().dataOffset;
            mon.close();
            mon = null;
            m.close();
            m = null;
            NbdInteropTest.stop(q);
            q = null;
            byte[] onDisk = Files.readAllBytes(file);
            assertArrayEquals(a.array(), java.util.Arrays.copyOfRange(onDisk, (int) dataOffset, (int) dataOffset + BLOCKS * BS),
                    "qemu-nbd's file holds the primary's blocks after the return");
        } finally {
            if (mon != null) mon.close();
            if (m != null) m.abandon();
            NbdInteropTest.stop(q);
            Files.deleteIfExists(file);
            Files.deleteIfExists(dir.resolve("qemu-nbd.log"));
            Files.deleteIfExists(dir);
        }
    }

    static ByteBuffer fill(int blocks, int v) {
        ByteBuffer b = ByteBuffer.allocate(blocks * BS);
        for (int i = 0; i < blocks * BS; i += 4) b.putInt(i, v * 100_000 + i);
        return b;
    }
}
