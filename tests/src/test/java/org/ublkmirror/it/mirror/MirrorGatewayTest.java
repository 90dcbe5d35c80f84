package org.ublkmirror.it.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.it.fuse.Root;
import org.ublkmirror.leg.Leg;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.RandomAccessFile;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The secondary behind a gateway (mirrorctl gateway, NBD on loopback): a file system on the
 * mirror keeps working when the gateway dies; the mirror degrades and tracks; when the gateway is
 * back, attach resyncs the tracked blocks over NBD and the legs verify identical.
 */
class MirrorGatewayTest {

    static Process gateway(Path file, int port, Path log) throws IOException, InterruptedException {
        Process g = new ProcessBuilder(ProcessHandle.current().info().command().orElse("java"), "-cp",
                System.getProperty("java.class.path"), "org.ublkmirror.cli.Mirrorctl", "gateway",
                "--export", "sec=" + file, "--listen", "127.0.0.1:" + port)
                .redirectErrorStream(true).start();
        BufferedReader r = new BufferedReader(new InputStreamReader(g.getInputStream()));
        String line = r.readLine();
        assertNotNull(line, "gateway exited at once");
        assertTrue(line.contains("serving nbd://"), "gateway said: " + line);
        Thread drain = new Thread(() -> {
            try {
                while (r.readLine() != null) {
                    // keep the pipe flowing
                }
            } catch (IOException ignored) {
                // gone
            }
        });
        drain.setDaemon(true);
        drain.start();
        return g;
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    @Test
    void gatewayDiesWhileMountedThenReturnsAndResyncsOverNbd() throws Exception {
        try (MirrorRig rig = new MirrorRig("nbd")) {
            long blocks = (128L << 20) / 4096;
            try (RandomAccessFile f = new RandomAccessFile(rig.secondary().toFile(), "rw")) {
                f.setLength(Leg.metadataBytes(blocks, Leg.DEFAULT_JOURNAL_BLOCKS) + (128L << 20));
            }
            int port = freePort();
            String url = "nbd://127.0.0.1:" + port + "/sec";
            Process gw = gateway(rig.secondary(), port, rig.dir.resolve("gw.log"));
            try {
                // manual resync policy: this test drives the return itself (`attach`); with the default
                // (auto) the link monitor may resync first and attach finds nothing to do
                rig.ok("create", "nbd", "--primary", rig.primary().toString(), "--secondary", url, "--size", "128M",
                        "--resync-policy", "manual");
                Path dev = rig.start();
                Root.sh("mkfs.ext4", "-q", "-F", dev.toString());
                rig.mount(dev);
                Root.sh("dd", "if=/dev/urandom", "of=" + rig.mnt.resolve("a"), "bs=1M", "count=8", "conv=fsync", "status=none");
                assertTrue(rig.ok("status", "nbd", "--json").contains("\"state\": \"mirrored\""));

                gw.destroyForcibly();
                assertTrue(gw.waitFor(30, TimeUnit.SECONDS));
                // the application keeps writing: the mirror degrades and tracks
                Root.sh("dd", "if=/dev/urandom", "of=" + rig.mnt.resolve("b"), "bs=1M", "count=8", "conv=fsync", "status=none");
                String st = rig.ok("status", "nbd", "--json");
                assertTrue(st.contains("\"state\": \"degraded\""), st);
                Matcher m = Pattern.compile("\"dirty_blocks\": (\\d+)").matcher(st);
                assertTrue(m.find() && Long.parseLong(m.group(1)) >= 2048, "8 MiB written while the gateway was down: " + st);
                String sa = MirrorRig.sha256(rig.mnt.resolve("a")), sb = MirrorRig.sha256(rig.mnt.resolve("b"));

                gw = gateway(rig.secondary(), port, rig.dir.resolve("gw2.log"));
                String attach = rig.ok("attach", "nbd");
                assertTrue(attach.contains("resync copied"), attach);
                assertTrue(rig.ok("status", "nbd", "--json").contains("\"state\": \"mirrored\""));
                Root.sh("sync");
                MirrorRig.Result v = rig.ctl("verify", "nbd");
                assertEquals(0, v.exit(), "legs differ after the resync over NBD: " + v.out() + v.err());
                Root.dropCaches();
                assertEquals(sa, MirrorRig.sha256(rig.mnt.resolve("a")));
                assertEquals(sb, MirrorRig.sha256(rig.mnt.resolve("b")));
                Root.sh("umount", rig.mnt.toString());
                rig.ok("stop", "nbd");
                // offline: both legs read directly (the secondary through the gateway)
                String[] h = rig.legHashes();
                assertEquals(h[0], h[1], "legs differ after stop");
            } finally {
                Root.umountQuietly(rig.mnt);
                try {
                    rig.ctl(60, "stop", "nbd", "--force");
                } catch (Exception | AssertionError ignored) {
                    // not running
                }
                gw.destroyForcibly();
                gw.waitFor(30, TimeUnit.SECONDS);
            }
        }
    }
}
