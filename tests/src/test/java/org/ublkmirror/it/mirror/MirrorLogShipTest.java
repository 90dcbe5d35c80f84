package org.ublkmirror.it.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.it.fuse.Root;
import org.ublkmirror.logship.LogReceiver;
import org.ublkmirror.logship.ReceiverStore;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Log shipping live, through the FUSE device: a mounted mirror ships its tracking log to a log
 * receiver on loopback; mirrorctl log --from shows what the primary's log shows; the receiver
 * goes away during writes (they succeed), comes back (shipping catches up); resync, verify.
 */
class MirrorLogShipTest {

    static long num(String json, String key) {
        Matcher m = Pattern.compile("\"" + key + "\": (-?\\d+)").matcher(json);
        assertTrue(m.find(), key + " not in " + json);
        return Long.parseLong(m.group(1));
    }

    static String ranges(String logJson) {
        int i = logJson.indexOf("\"ranges\"");
        assertTrue(i >= 0, logJson);
        return logJson.substring(i);
    }

    /** Waits until status says the newest log is shipped without error; returns the status. */
    static String awaitShipped(MirrorRig rig, long timeoutMs) throws Exception {
        long end = System.currentTimeMillis() + timeoutMs;
        String st;
        do {
            st = rig.ok("status", rig.name, "--json");
            if (st.contains("\"behind\": false") && st.contains("\"error\": null")) return st;
            Thread.sleep(200);
        } while (System.currentTimeMillis() < end);
        fail("the tracking log was not shipped in time: " + st);
        return st;
    }

    /**
     * The primary's live log and the receiver's copy, once they agree: the file system may still
     * write (journal commits) after a sync, so this syncs, waits for the ship, and compares again.
     */
    static String[] agreeing(MirrorRig rig, String from) throws Exception {
        long end = System.currentTimeMillis() + 60_000;
        String local, remote;
        do {
            Root.sh("sync");
            awaitShipped(rig, 30_000);
            local = rig.ok("log", rig.name, "--json");
            remote = rig.ok("log", rig.name, "--from", from, "--json");
            if (ranges(local).equals(ranges(remote))) return new String[] {local, remote};
            Thread.sleep(1000);
        } while (System.currentTimeMillis() < end);
        assertEquals(ranges(local), ranges(remote), "the receiver's copy shows what the primary's log shows");
        return null;
    }

    @Test
    void aMountedMirrorShipsItsLogAndCatchesUpAfterTheReceiverWasDown() throws Exception {
        try (MirrorRig rig = new MirrorRig("ship")) {
            Path rdir = rig.dir.resolve("received");
            LogReceiver r = LogReceiver.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), ReceiverStore.open(rdir), null);
            int port = r.port();
            String from = "127.0.0.1:" + port;
            try {
                rig.ok("create", "ship", "--primary", rig.primary().toString(), "--secondary", rig.secondary().toString(),
                        "--size", "128M", "--ship-to", from);
                Path dev = rig.start();
                Root.sh("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", dev.toString());
                rig.mount(dev);
                rig.ok("detach", "ship");
                Root.sh("dd", "if=/dev/urandom", "of=" + rig.mnt.resolve("a"), "bs=1M", "count=4", "conv=fsync", "status=none");
                String local = agreeing(rig, from)[0];
                assertTrue(num(local, "dirty_blocks") >= 1024, local);

                // the receiver goes away: writes and fsync go on, status names the shipping error
                r.close();
                Root.sh("dd", "if=/dev/urandom", "of=" + rig.mnt.resolve("b"), "bs=1M", "count=4", "conv=fsync", "status=none");
                String st = rig.ok("status", "ship", "--json");
                long end = System.currentTimeMillis() + 20_000;
                while (!st.contains("cannot reach log receiver " + from) && System.currentTimeMillis() < end) {
                    Thread.sleep(200);
                    st = rig.ok("status", "ship", "--json");
                }
                assertTrue(st.contains("cannot reach log receiver " + from), st);
                assertTrue(rig.ok("status", "ship").contains("ERROR"), "the text status shows the shipping error");
                MirrorRig.Result down = rig.ctl("log", "ship", "--from", from);
                assertEquals(5, down.exit());
                assertEquals(1, down.err().strip().lines().count(), down.err());

                // it comes back on the same port and directory: the newest log arrives
                r = LogReceiver.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), ReceiverStore.open(rdir), null);
                local = agreeing(rig, from)[0];
                assertTrue(num(local, "dirty_blocks") >= 2048, local);

                rig.ok("attach", "ship");
                awaitShipped(rig, 30_000);
                assertEquals(0, num(rig.ok("log", "ship", "--from", from, "--json"), "dirty_blocks"), "after resync the shipped log is empty");
                Root.sh("sync");
                MirrorRig.Result v = rig.ctl("verify", "ship");
                assertEquals(0, v.exit(), "online verify after resync: " + v.out() + v.err());
                Root.sh("umount", rig.mnt.toString());
                rig.ok("stop", "ship");
                String[] h = rig.legHashes();
                assertEquals(h[0], h[1], "legs differ after the outage and resync");
            } finally {
                r.close();
            }
        }
    }
}
