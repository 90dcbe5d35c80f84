package org.ublkmirror.it.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.it.fuse.Root;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

/** Degraded mode, live: detach, write, log, attach with an online resync, verify, all while mounted and under load. */
class MirrorOutageTest {

    static long num(String json, String key) {
        Matcher m = Pattern.compile("\"" + key + "\": (\\d+)").matcher(json);
        assertTrue(m.find(), key + " not in " + json);
        return Long.parseLong(m.group(1));
    }

    @Test
    void detachWriteAttachResyncVerifyUnderLoad() throws Exception {
        try (MirrorRig rig = new MirrorRig("out")) {
            rig.create("256M");
            Path dev = rig.start();
            Root.sh("mkfs.ext4", "-q", "-F", dev.toString());
            rig.mount(dev);
            Root.sh("dd", "if=/dev/urandom", "of=" + rig.mnt.resolve("base"), "bs=1M", "count=32", "conv=fsync", "status=none");

            rig.ok("detach", "out");
            assertTrue(rig.ok("status", "out", "--json").contains("\"state\": \"degraded\""));
            // load during the outage and across the resync: fio writes and verifies its own file
            Process fio = new ProcessBuilder("fio", "--name=load", "--filename=" + rig.mnt.resolve("load"), "--size=48M",
                    "--rw=randwrite", "--bs=4k", "--iodepth=8", "--ioengine=libaio", "--direct=1", "--time_based",
                    "--runtime=12", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0", "--output=" + rig.dir.resolve("fio.out"))
                    .redirectErrorStream(true).start();
            try {
                Thread.sleep(3000);
                Root.sh("dd", "if=/dev/urandom", "of=" + rig.mnt.resolve("outage"), "bs=1M", "count=8", "conv=fsync", "status=none");
                String log = rig.ok("log", "out", "--json");
                long tracked = num(log, "dirty_blocks");
                assertTrue(tracked >= 2048, "8 MiB written while detached, but only " + tracked + " blocks tracked");
                assertTrue(log.contains("first_written"), log);
                String shipped = rig.ok("log", "out", "--shipped", "--json");
                assertTrue(num(shipped, "dirty_blocks") > 0, "shipped log is empty: " + shipped);

                String attach = rig.ok("attach", "out");
                Matcher m = Pattern.compile("resync copied (\\d+) block").matcher(attach);
                assertTrue(m.find(), attach);
                long copied = Long.parseLong(m.group(1));
                long volumeBlocks = (256L << 20) / 4096;
                assertTrue(copied >= 2048 && copied < volumeBlocks / 2,
                        "resync copied " + copied + " blocks; expected the tracked ones (>= " + tracked + "), far from all " + volumeBlocks);
                assertTrue(rig.ok("status", "out", "--json").contains("\"state\": \"mirrored\""));
            } finally {
                assertEquals(0, fio.waitFor(), () -> "fio verify under outage and resync failed: " + read(rig.dir.resolve("fio.out")));
            }
            Root.sh("sync");
            MirrorRig.Result v = rig.ctl("verify", "out");
            assertEquals(0, v.exit(), "online verify after resync: " + v.out() + v.err());
            Root.sh("umount", rig.mnt.toString());
            rig.ok("stop", "out");
            String[] h = rig.legHashes();
            assertEquals(h[0], h[1], "legs differ after outage and resync");
        }
    }

    static String read(Path p) {
        try {
            return Files.readString(p);
        } catch (Exception e) {
            return e.toString();
        }
    }
}
