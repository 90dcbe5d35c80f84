package org.ublkmirror.it.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.daemon.Wire;
import org.ublkmirror.it.fuse.Root;
import org.ublkmirror.it.net.NetNs;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.Leg;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.BufferedReader;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.RandomAccessFile;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Predicate;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The secondary across a real (virtual) network: the mirror daemon in one network namespace, the
 * gateway in another, a veth pair between them (see {@link NetNs}; nothing outside the two
 * namespaces is touched). An ext4 file system on the mirror (FUSE + loop) carries fio verify
 * jobs back to back the whole time, while the link is cut and restored 20 times (half of the
 * cycles with loss and a rate limit on the link), and the gateway is killed and restarted
 * mid-write. The mirror must find each outage within its configured bound, never fail a write,
 * reconnect and resync by itself (policy auto), and end with: every fio job verified, the legs
 * byte-identical, e2fsck clean, and the resync no larger than the blocks tracked plus the
 * documented superset.
 */
class MirrorNetLinkTest {
    static final String NAME = "net";
    static final long IO_TIMEOUT_MS = 1000, HEARTBEAT_MS = 250;

    @SuppressWarnings("unchecked")
    static Map<String, Object> status(MirrorRig rig) throws IOException {
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(rig.run.resolve(NAME + ".sock")));
            DataOutputStream out = new DataOutputStream(new BufferedOutputStream(Channels.newOutputStream(ch)));
            DataInputStream in = new DataInputStream(new BufferedInputStream(Channels.newInputStream(ch)));
            Map<String, Object> req = new LinkedHashMap<>();
            req.put("verb", "status");
            Wire.write(out, req);
            out.flush();
            Map<String, Object> res = (Map<String, Object>) Wire.read(in);
            assertEquals(0L, res.get("exit"), String.valueOf(res));
            return (Map<String, Object>) res.get("result");
        }
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> sub(Map<String, Object> m, String key) {
        return (Map<String, Object>) m.get(key);
    }

    static long num(Map<String, Object> m, String key) {
        return ((Number) m.get(key)).longValue();
    }

    /** Polls status until it matches; returns the ms it took. */
    static long await(MirrorRig rig, String what, long ms, Predicate<Map<String, Object>> cond) throws Exception {
        long t0 = System.nanoTime(), end = System.currentTimeMillis() + ms;
        Map<String, Object> st = null;
        while (System.currentTimeMillis() < end) {
            st = status(rig);
            if (cond.test(st)) return (System.nanoTime() - t0) / 1_000_000;
            Thread.sleep(50);
        }
        fail("not " + what + " within " + ms + " ms; status: " + st + "\ndaemon log:\n" + rig.daemonLog());
        return -1;
    }

    static boolean mirrored(Map<String, Object> st) {
        return "mirrored".equals(st.get("state")) && "connected".equals(sub(st, "link").get("state")) && num(st, "dirty_blocks") == 0;
    }

    static boolean lost(Map<String, Object> st) {
        return "degraded".equals(st.get("state")) || "reconnecting".equals(sub(st, "link").get("state"));
    }

    static Process gateway(NetNs ns, Path file, Path log) throws IOException {
        List<String> cmd = ns.inGateway(List.of(ProcessHandle.current().info().command().orElse("java"), "-cp",
                System.getProperty("java.class.path"), "org.ublkmirror.cli.Mirrorctl", "gateway",
                "--export", "sec=" + file, "--listen", ns.gatewayAddr + ":" + NetNs.NBD_PORT));
        Process g = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        long end = System.currentTimeMillis() + 30_000;
        while (System.currentTimeMillis() < end) {
            if (Files.exists(log) && Files.readString(log).contains("serving nbd://" + ns.gatewayAddr)) return g;
            if (!g.isAlive()) fail("gateway exited: " + Files.readString(log));
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                throw new IOException(e);
            }
        }
        fail("gateway did not come up: " + Files.readString(log));
        return g;
    }

    /** Runs short fio verify jobs back to back on the mounted file system until stopped; any failure is kept. */
    static final class FioLoop implements AutoCloseable {
        final AtomicBoolean stop = new AtomicBoolean();
        final AtomicReference<String> failure = new AtomicReference<>();
        final AtomicInteger jobs = new AtomicInteger();
        final Thread thread;
        volatile Process current;

        FioLoop(Path mnt, Path dir) {
            thread = new Thread(() -> {
                for (int i = 0; !stop.get() && failure.get() == null; i++) {
                    Path out = dir.resolve("fio-" + i + ".out");
                    try {
                        Process p = new ProcessBuilder("fio", "--name=net" + i, "--filename=" + mnt.resolve("load" + (i % 2)), "--size=24M",
                                "--rw=randwrite", "--bs=4k", "--iodepth=8", "--ioengine=libaio", "--direct=1", "--time_based",
                                "--runtime=3", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0",
                                "--output=" + out).redirectErrorStream(true).redirectOutput(dir.resolve("fio-" + i + ".err").toFile()).start();
                        current = p;
                        if (!p.waitFor(300, TimeUnit.SECONDS)) {
                            p.destroyForcibly();
                            failure.set("fio job " + i + " hung (a write never completed?)");
                        } else if (p.exitValue() != 0) {
                            failure.set("fio job " + i + " failed (" + p.exitValue() + "): " + Files.readString(out)
                                    + Files.readString(dir.resolve("fio-" + i + ".err")));
                        } else {
                            jobs.incrementAndGet();
                        }
                    } catch (Exception e) {
                        failure.set("fio job " + i + ": " + e);
                    }
                }
            }, "fio-loop");
            thread.start();
        }

        void check() {
            assertNull(failure.get(), failure.get());
        }

        @Override
        public void close() throws InterruptedException {
            stop.set(true);
            thread.join(320_000);
            Process p = current;
            if (p != null && p.isAlive()) p.destroyForcibly();
        }
    }

    /** The data areas of both leg files, hashed, read directly from the files (the mirror stopped). */
    static String[] legHashes(Path primary, Path secondary) throws Exception {
        String[] h = new String[2];
        Path[] f = {primary, secondary};
        for (int i = 0; i < 2; i++) {
            try (FileStore st = FileStore.openReadOnly(f[i])) {
                h[i] = MirrorRig.hash(Leg.open(st).data());
            }
        }
        return h;
    }

    @Test
    void twentyLinkCutsLossAndAGatewayKillUnderFioVerifyConverge() throws Exception {
        NetNs.require();
        long volume = 128L << 20, blocks = volume / 4096;
        List<Long> detectMs = new ArrayList<>(), returnMs = new ArrayList<>();
        try (NetNs ns = NetNs.create(); MirrorRig rig = new MirrorRig(NAME)) {
            rig.wrap = ns::inClient; // mirrorctl, and so the daemon it spawns, in the client's namespace
            try (RandomAccessFile f = new RandomAccessFile(rig.secondary().toFile(), "rw")) {
                f.setLength(Leg.metadataBytes(blocks, Leg.DEFAULT_JOURNAL_BLOCKS) + volume);
            }
            Path gwLog = rig.dir.resolve("gateway.log");
            Process gw = gateway(ns, rig.secondary(), gwLog);
            try {
                rig.ok("create", NAME, "--primary", rig.primary().toString(), "--secondary", ns.nbdUrl("sec"), "--size", "128M",
                        "--io-timeout", IO_TIMEOUT_MS + "ms", "--heartbeat", HEARTBEAT_MS + "ms", "--connect-timeout", "1s",
                        "--retry-min", "100ms", "--retry-max", "1s");
                assertTrue(rig.ok("config", NAME, "--json").contains("\"resync_policy\": \"auto\""), "auto is the default policy");
                Path dev = rig.start();
                Root.sh("mkfs.ext4", "-q", "-F", dev.toString());
                rig.mount(dev);
                await(rig, "mirrored", 30_000, MirrorNetLinkTest::mirrored);
                try (FioLoop fio = new FioLoop(rig.mnt, rig.dir)) {
                    Thread.sleep(1000);
                    for (int cycle = 0; cycle < 20; cycle++) {
                        if (cycle == 10) {
                            ns.impair(3, 50, 200); // the second half on a lossy, rate-limited link
                            System.err.println("cycles 10..19: " + ns.impairment());
                        }
                        ns.cut();
                        detectMs.add(await(rig, "degraded after cut " + cycle, 10_000, MirrorNetLinkTest::lost));
                        Thread.sleep(300); // writes go on, tracked
                        ns.restore();
                        returnMs.add(await(rig, "resynced after restore " + cycle, 60_000, MirrorNetLinkTest::mirrored));
                        fio.check();
                    }
                    ns.clear();
                    // the gateway killed in the middle of the writes, then restarted in its namespace
                    gw.destroyForcibly();
                    assertTrue(gw.waitFor(30, TimeUnit.SECONDS));
                    await(rig, "degraded after the gateway was killed", 10_000, MirrorNetLinkTest::lost);
                    Thread.sleep(500);
                    gw = gateway(ns, rig.secondary(), gwLog);
                    await(rig, "resynced after the gateway's restart", 60_000, MirrorNetLinkTest::mirrored);
                    Thread.sleep(1000);
                    fio.close();
                    fio.check();
                    assertTrue(fio.jobs.get() >= 5, "fio jobs verified: " + fio.jobs.get());
                    System.err.println("fio verify jobs, all passed: " + fio.jobs.get());
                }
                Root.sh("sync");
                Map<String, Object> st = status(rig);
                assertTrue(mirrored(st), String.valueOf(st));
                Map<String, Object> link = sub(st, "link"), out = sub(st, "outage");
                System.err.println("detection ms per cut: " + detectMs + "\nreturn (reconnect + resync) ms per cut: " + returnMs
                        + "\nlink: " + link + "\noutage: " + out);
                // every cut was found within the bound: I/O timeout (+ heartbeat when idle) + polling slack
                for (long d : detectMs) assertTrue(d <= IO_TIMEOUT_MS + HEARTBEAT_MS + 1500, "an outage found after " + d + " ms: " + detectMs);
                assertTrue(num(link, "outages") >= 21, "outages counted: " + link);
                assertTrue(num(link, "reconnects") >= 21, "reconnects counted: " + link);
                long resynced = num(out, "resynced_blocks"), tracked = num(out, "tracked_write_blocks"), superset = num(out, "superset_blocks");
                assertTrue(resynced > 0 && resynced <= tracked + superset,
                        "resync copied " + resynced + " blocks; tracked " + tracked + " + superset " + superset);
                // the superset per outage is bounded by the intent record's hot set (505 regions of 1024 blocks)
                assertTrue(superset <= num(link, "outages") * 505L * 1024, "superset " + superset);
                MirrorRig.Result v = rig.ctl("verify", NAME);
                assertEquals(0, v.exit(), "legs differ online: " + v.out() + v.err());
                Root.sh("umount", rig.mnt.toString());
                Root.Result fsck = Root.run(300, "e2fsck", "-fn", dev.toString());
                assertEquals(0, fsck.exit(), "e2fsck: " + fsck.out());
                rig.ok("stop", NAME);
                String[] h = legHashes(rig.primary(), rig.secondary());
                assertEquals(h[0], h[1], "leg files differ after 20 cuts and a gateway kill");
            } finally {
                Root.umountQuietly(rig.mnt);
                try {
                    if (Files.exists(rig.run.resolve(NAME + ".sock"))) rig.ctl(120, "stop", NAME, "--force");
                } catch (Exception | AssertionError e) {
                    System.err.println("cleanup: stop: " + e);
                }
                gw.destroyForcibly();
                gw.waitFor(30, TimeUnit.SECONDS);
            }
        }
    }
    /** The delaying relay (it.net.DelayRelay) in the gateway's namespace: ADDR:port -> ADDR:10809, delayMs each way. */
    static Process delayRelay(NetNs ns, int port, int delayMs, Path log) throws IOException {
        List<String> cmd = ns.inGateway(List.of(ProcessHandle.current().info().command().orElse("java"), "-cp",
                System.getProperty("java.class.path"), "org.ublkmirror.it.net.DelayRelay", ns.gatewayAddr, String.valueOf(port),
                ns.gatewayAddr, String.valueOf(NetNs.NBD_PORT), String.valueOf(delayMs)));
        Process r = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        long end = System.currentTimeMillis() + 30_000;
        while (System.currentTimeMillis() < end) {
            if (Files.exists(log) && Files.readString(log).contains("relaying")) return r;
            if (!r.isAlive()) fail("relay exited: " + Files.readString(log));
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                throw new IOException(e);
            }
        }
        fail("relay did not come up: " + Files.readString(log));
        return r;
    }

    /**
     * The same cycle on a link with a fixed delay: sch_netem is not in this kernel (no modules,
     * CONFIG_NET_SCH_NETEM unset; checked with {@link NetNs#kernelHasNetem}), so the delay is a
     * relay in the gateway's namespace holding every byte 25 ms each way (50 ms round trip; see
     * {@code it.net.DelayRelay}); the mirror dials the relay across the veth. fio verify jobs on
     * ext4 run throughout 5 cuts and restores; each cut is found within the bound, each return
     * resyncs; then online verify, e2fsck, identical leg files, and the relay's own account that
     * no byte passed in less than the delay.
     */
    @Test
    void linkCutsUnderAFixedDelayConverge() throws Exception {
        NetNs.require();
        final int delayMs = 25, relayPort = NetNs.NBD_PORT + 1;
        final long ioTimeoutMs = 2000;
        long volume = 128L << 20, blocks = volume / 4096;
        List<Long> detectMs = new ArrayList<>(), returnMs = new ArrayList<>();
        try (NetNs ns = NetNs.create(); MirrorRig rig = new MirrorRig(NAME)) {
            boolean netem = NetNs.kernelHasNetem(ns.gateway, ns.gatewayIf);
            System.err.println("sch_netem in this kernel: " + netem + (netem ? " (the relay is used all the same: one way on every kernel)" : ""));
            rig.wrap = ns::inClient;
            try (RandomAccessFile f = new RandomAccessFile(rig.secondary().toFile(), "rw")) {
                f.setLength(Leg.metadataBytes(blocks, Leg.DEFAULT_JOURNAL_BLOCKS) + volume);
            }
            Path gwLog = rig.dir.resolve("gateway.log"), relayLog = rig.dir.resolve("relay.log");
            Process gw = gateway(ns, rig.secondary(), gwLog);
            Process relay = null;
            try {
                relay = delayRelay(ns, relayPort, delayMs, relayLog);
                String url = "nbd://" + ns.gatewayAddr + ":" + relayPort + "/sec";
                rig.ok("create", NAME, "--primary", rig.primary().toString(), "--secondary", url, "--size", "128M",
                        "--io-timeout", ioTimeoutMs + "ms", "--heartbeat", HEARTBEAT_MS + "ms", "--connect-timeout", "1s",
                        "--retry-min", "100ms", "--retry-max", "1s");
                Path dev = rig.start();
                Root.sh("mkfs.ext4", "-q", "-F", dev.toString());
                rig.mount(dev);
                await(rig, "mirrored", 60_000, MirrorNetLinkTest::mirrored);
                try (FioLoop fio = new FioLoop(rig.mnt, rig.dir)) {
                    Thread.sleep(1000);
                    for (int cycle = 0; cycle < 5; cycle++) {
                        ns.cut();
                        detectMs.add(await(rig, "degraded after cut " + cycle, 15_000, MirrorNetLinkTest::lost));
                        Thread.sleep(300);
                        ns.restore();
                        returnMs.add(await(rig, "resynced after restore " + cycle, 120_000, MirrorNetLinkTest::mirrored));
                        fio.check();
                    }
                    Thread.sleep(1000);
                    fio.close();
                    fio.check();
                    assertTrue(fio.jobs.get() >= 2, "fio jobs verified: " + fio.jobs.get());
                    System.err.println("fio verify jobs under a " + delayMs + " ms delay, all passed: " + fio.jobs.get());
                }
                Root.sh("sync");
                Map<String, Object> st = status(rig);
                assertTrue(mirrored(st), String.valueOf(st));
                Map<String, Object> link = sub(st, "link"), out = sub(st, "outage");
                System.err.println("delay " + delayMs + " ms each way; detection ms per cut: " + detectMs
                        + "\nreturn (reconnect + resync) ms per cut: " + returnMs + "\nlink: " + link + "\noutage: " + out);
                for (long d : detectMs) assertTrue(d <= ioTimeoutMs + HEARTBEAT_MS + 1500, "an outage found after " + d + " ms: " + detectMs);
                assertTrue(num(link, "outages") >= 5 && num(link, "reconnects") >= 5, "outages and reconnects counted: " + link);
                long resynced = num(out, "resynced_blocks"), tracked = num(out, "tracked_write_blocks"), superset = num(out, "superset_blocks");
                assertTrue(resynced > 0 && resynced <= tracked + superset,
                        "resync copied " + resynced + " blocks; tracked " + tracked + " + superset " + superset);
                MirrorRig.Result v = rig.ctl("verify", NAME);
                assertEquals(0, v.exit(), "legs differ online: " + v.out() + v.err());
                Root.sh("umount", rig.mnt.toString());
                Root.Result fsck = Root.run(300, "e2fsck", "-fn", dev.toString());
                assertEquals(0, fsck.exit(), "e2fsck: " + fsck.out());
                rig.ok("stop", NAME);
                String[] h = legHashes(rig.primary(), rig.secondary());
                assertEquals(h[0], h[1], "leg files differ after 5 cuts on a delayed link");
                relay.destroy(); // SIGTERM: it prints its account
                assertTrue(relay.waitFor(30, TimeUnit.SECONDS));
                String stats = Files.readString(relayLog).lines().filter(l -> l.startsWith("relay stats:")).findFirst().orElse("");
                System.err.println(stats);
                java.util.regex.Matcher mm = java.util.regex.Pattern.compile("(\\d+) chunk\\(s\\).* hold min ([0-9.]+) ms").matcher(stats);
                assertTrue(mm.find(), "relay stats: " + stats);
                assertTrue(Long.parseLong(mm.group(1)) > 1000, "traffic went through the relay: " + stats);
                assertTrue(Double.parseDouble(mm.group(2)) >= delayMs, "every byte held at least the delay: " + stats);
            } finally {
                Root.umountQuietly(rig.mnt);
                try {
                    if (Files.exists(rig.run.resolve(NAME + ".sock"))) rig.ctl(120, "stop", NAME, "--force");
                } catch (Exception | AssertionError e) {
                    System.err.println("cleanup: stop: " + e);
                }
                if (relay != null) {
                    relay.destroyForcibly();
                    relay.waitFor(30, TimeUnit.SECONDS);
                }
                gw.destroyForcibly();
                gw.waitFor(30, TimeUnit.SECONDS);
            }
        }
    }
}
