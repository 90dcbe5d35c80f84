package org.ublkmirror.it.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.it.fuse.Root;
import org.ublkmirror.it.net.NetNs;
import org.ublkmirror.leg.Leg;

import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;
import static org.ublkmirror.it.mirror.MirrorNetLinkTest.*;

/**
 * {@code mirrorctl start} while the gateway cannot be reached, in network namespaces made by the
 * test ({@link NetNs}): the start succeeds degraded with one line saying so, writes are tracked,
 * and the secondary is resynced once the gateway answers. Three starts:
 * <ol>
 * <li>after a kill -9 of the daemon in the middle of writes on a mirrored device (an unclean run),
 *     with the gateway black-holed (nftables drop, connect times out): the blocks the secondary
 *     may lack (live tags, intent regions) are dirty before the device appears; the black hole
 *     lifted, the link monitor reattaches and resyncs live;</li>
 * <li>after a clean stop, with the gateway process stopped (SIGSTOP: the kernel accepts the TCP
 *     connection, the NBD handshake never answers): degraded, nothing dirty, then writes tracked;</li>
 * <li>after a clean stop while degraded, with the gateway continued (SIGCONT): it answers at the
 *     start, and the outage recorded at the second start says it is behind: resync.</li>
 * </ol>
 * fio verify writes run on the degraded device; at the end online verify and the leg files agree.
 */
class MirrorNetStartTest {
    static final String NAME = MirrorNetLinkTest.NAME;

    static void fio(MirrorRig rig, Path dev, String name, String offset, boolean verify, int runtime) throws Exception {
        Root.Result r = Root.run(300, "fio", "--name=" + name, "--filename=" + dev, "--offset=" + offset, "--size=16M",
                "--rw=randwrite", "--bs=4k", "--iodepth=8", "--ioengine=libaio", "--direct=1",
                verify ? "--verify=crc32c" : "--verify=0", verify ? "--do_verify=1" : "--do_verify=0", "--verify_fatal=1",
                "--verify_state_save=0", runtime > 0 ? "--time_based" : "--loops=1", "--runtime=" + Math.max(runtime, 1) + "s",
                "--output=" + rig.dir.resolve(name + ".out"));
        assertEquals(0, r.exit(), "fio " + name + ": " + r.out() + (Root.run(10, "cat", rig.dir.resolve(name + ".out").toString()).out()));
    }

    static Path lastDevice;

    /** mirrorctl start; returns its stdout + stderr (the start must succeed); the device in {@link #lastDevice}. */
    static String start(MirrorRig rig, long boundMs) throws Exception {
        long t0 = System.nanoTime();
        MirrorRig.Result r = rig.ctl("start", NAME, "--frontend", "fuse");
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertEquals(0, r.exit(), "start with the gateway unreachable must succeed degraded: " + r.out() + r.err() + "\n" + rig.daemonLog());
        rig.daemonPids.add(rig.daemonPid());
        lastDevice = Path.of(r.out().trim().lines().reduce((x, y) -> y).orElseThrow());
        assertTrue(ms < boundMs, "start took " + ms + " ms");
        System.err.println("start took " + ms + " ms:\n" + r.err());
        return r.out() + r.err();
    }

    static void assertDegradedStartLine(String out) {
        String line = out.lines().filter(l -> l.startsWith("secondary ") && l.contains("unreachable at start")).findFirst().orElse(null);
        assertNotNull(line, "no 'secondary ... unreachable at start' line: " + out);
        assertTrue(line.contains("running degraded") && line.contains("writes are tracked") && line.contains("reconnects"), line);
    }

    @Test
    void startWithTheGatewayBlackHoledOrHungRunsDegradedAndResyncsWhenItAnswers() throws Exception {
        NetNs.require();
        long volume = 64L << 20, blocks = volume / 4096;
        try (NetNs ns = NetNs.create(); MirrorRig rig = new MirrorRig(NAME)) {
            rig.wrap = ns::inClient;
            try (RandomAccessFile f = new RandomAccessFile(rig.secondary().toFile(), "rw")) {
                f.setLength(Leg.metadataBytes(blocks, Leg.DEFAULT_JOURNAL_BLOCKS) + volume);
            }
            Path gwLog = rig.dir.resolve("gateway.log");
            Process gw = gateway(ns, rig.secondary(), gwLog);
            try {
                rig.ok("create", NAME, "--primary", rig.primary().toString(), "--secondary", ns.nbdUrl("sec"), "--size", "64M",
                        "--io-timeout", IO_TIMEOUT_MS + "ms", "--heartbeat", HEARTBEAT_MS + "ms", "--connect-timeout", "1s",
                        "--retry-min", "100ms", "--retry-max", "1s");
                Path dev = rig.start();
                await(rig, "mirrored", 30_000, MirrorNetLinkTest::mirrored);
                fio(rig, dev, "layout", "0", false, 0);

                // 1. an unclean end while mirrored: kill -9 in the middle of writes, then the gateway black-holed
                Process w = new ProcessBuilder("fio", "--name=busy", "--filename=" + dev, "--offset=16M", "--size=16M", "--rw=randwrite",
                        "--bs=4k", "--iodepth=16", "--ioengine=libaio", "--direct=1", "--time_based", "--runtime=60",
                        "--output=" + rig.dir.resolve("busy.out")).redirectErrorStream(true).start();
                Thread.sleep(3000);
                long pid = rig.daemonPid();
                Root.sh("kill", "-9", Long.toString(pid));
                ProcessHandle.of(pid).ifPresent(h -> h.onExit().join());
                assertTrue(w.waitFor(120, TimeUnit.SECONDS), "fio did not end after the daemon died");
                ns.blackHole(true);
                String out = start(rig, 60_000);
                assertDegradedStartLine(out);
                Map<String, Object> st = status(rig);
                assertEquals("degraded", st.get("state"), String.valueOf(st));
                assertEquals("reconnecting", sub(st, "link").get("state"), String.valueOf(st));
                long dirtyAtStart = num(st, "dirty_blocks");
                assertTrue(dirtyAtStart > 0, "the crash's in-doubt blocks are dirty before any new write: " + st);
                assertTrue(rig.daemonLog().contains("recovery: daemon-crash"), rig.daemonLog());
                Path dev1 = lastDevice;
                fio(rig, dev1, "degraded1", "32M", true, 0); // verify writes on the degraded device
                assertTrue(num(status(rig), "dirty_blocks") > dirtyAtStart, "writes while degraded are tracked");

                // the gateway answers again (the black hole lifted): the link monitor reattaches and resyncs live
                ns.blackHole(false);
                long back = await(rig, "resynced after the black hole was lifted", 120_000, MirrorNetLinkTest::mirrored);
                System.err.println("mirrored " + back + " ms after the black hole was lifted; link " + sub(status(rig), "link"));
                MirrorRig.Result v1 = rig.ctl("verify", NAME);
                assertEquals(0, v1.exit(), "legs differ online after the first return: " + v1.out() + v1.err());

                // 2. a clean stop (mirrored), then a start with the gateway hung (SIGSTOP: TCP accepted, no handshake)
                rig.ok("stop", NAME);
                Root.sh("kill", "-STOP", Long.toString(gw.pid()));
                out = start(rig, 60_000);
                assertDegradedStartLine(out);
                assertTrue(out.contains("handshake"), out);
                st = status(rig);
                assertEquals("degraded", st.get("state"), String.valueOf(st));
                assertEquals(0, num(st, "dirty_blocks"), "a clean previous run leaves nothing in doubt: " + st);
                fio(rig, lastDevice, "degraded2", "48M", true, 0);
                long tracked = num(status(rig), "dirty_blocks");
                assertTrue(tracked > 0, "writes while degraded are tracked");

                // 3. a clean stop while degraded, the gateway continued, a start that reaches it: the secondary
                // sat out the last run (on record since that start), so it is resynced, not taken as in sync
                rig.ok("stop", NAME);
                Root.sh("kill", "-CONT", Long.toString(gw.pid()));
                start(rig, 60_000);
                long resync = await(rig, "resynced after a start with the gateway back", 120_000, MirrorNetLinkTest::mirrored);
                System.err.println("mirrored " + resync + " ms after the third start; outage " + sub(status(rig), "outage"));
                MirrorRig.Result v = rig.ctl("verify", NAME);
                assertEquals(0, v.exit(), "legs differ online: " + v.out() + v.err());
                rig.ok("stop", NAME);
                String[] h = legHashes(rig.primary(), rig.secondary());
                assertEquals(h[0], h[1], "leg files differ after the degraded starts and the resync");
            } finally {
                Root.run(10, "kill", "-CONT", Long.toString(gw.pid()));
                gw.destroyForcibly();
                gw.waitFor(30, TimeUnit.SECONDS);
            }
        }
    }
}
