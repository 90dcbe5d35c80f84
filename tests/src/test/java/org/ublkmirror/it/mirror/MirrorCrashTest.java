package org.ublkmirror.it.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.it.fuse.Root;

import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

/**
 * kill -9 of the daemon during fio writes: restart reconciles the tag tables before the device
 * appears, fio's saved verify state checks every write it saw acknowledged, e2fsck is clean, and
 * the legs are identical. The repair is reported and bounded (in-flight writes, not a full copy).
 */
class MirrorCrashTest {

    @Test
    void killDuringFioThenRestartReconcilesAndNothingAcknowledgedIsLost() throws Exception {
        try (MirrorRig rig = new MirrorRig("kill")) {
            rig.create("256M");
            Path dev = rig.start();
            Root.sh("mkfs.ext4", "-q", "-F", dev.toString());
            rig.mount(dev);
            Path file = rig.mnt.resolve("data");
            // lay the file out first (allocated, synced), so direct overwrites need no fs metadata
            Root.sh("fio", "--name=layout", "--filename=" + file, "--size=32M", "--rw=write", "--bs=1M", "--direct=1", "--end_fsync=1");
            Path state = rig.dir.resolve("fio-state");
            java.nio.file.Files.createDirectories(state);
            Process fio = new ProcessBuilder("fio", "--name=crash", "--filename=" + file, "--size=32M", "--rw=randwrite",
                    "--bs=4k", "--iodepth=16", "--ioengine=libaio", "--direct=1", "--time_based", "--runtime=60",
                    "--verify=crc32c", "--verify_state_save=1", "--do_verify=0", "--output=" + rig.dir.resolve("fio.out"))
                    .directory(state.toFile()).redirectErrorStream(true).start();
            Thread.sleep(4000);
            long pid = rig.daemonPid();
            Root.sh("kill", "-9", Long.toString(pid));
            ProcessHandle.of(pid).ifPresent(h -> h.onExit().join());
            assertTrue(fio.waitFor(120, TimeUnit.SECONDS), "fio did not end after the daemon died");
            Root.umountQuietly(rig.mnt);

            // restart: the crash is repaired before the device appears
            Path dev2 = rig.start();
            String log = rig.daemonLog();
            Matcher m = Pattern.compile("recovery: daemon-crash: (\\d+) live tag\\(s\\) on primary, (\\d+) on secondary.*repaired (\\d+) block").matcher(log);
            assertTrue(m.find(), "no daemon-crash recovery report in the daemon's log:\n" + log);
            long repaired = Long.parseLong(m.group(3));
            long volumeBlocks = (256L << 20) / 4096;
            assertTrue(repaired <= 16384 && repaired < volumeBlocks / 4, "repaired " + repaired + " blocks: not bounded by the writes in flight");

            rig.mount(dev2); // replays the ext4 journal
            Root.Result verify = Root.run(600, "fio", "--name=crash", "--filename=" + file, "--size=32M", "--rw=randwrite",
                    "--bs=4k", "--iodepth=16", "--ioengine=libaio", "--direct=1", "--verify=crc32c", "--verify_state_load=1",
                    "--verify_only=1", "--verify_fatal=1", "--directory=" + state);
            // fio resolves the state file relative to its working directory
            if (verify.out().contains("No such file")) {
                verify = Root.run(600, "sh", "-c", "cd " + state + " && fio --name=crash --filename=" + file
                        + " --size=32M --rw=randwrite --bs=4k --iodepth=16 --ioengine=libaio --direct=1 --verify=crc32c"
                        + " --verify_state_load=1 --verify_only=1 --verify_fatal=1");
            }
            assertEquals(0, verify.exit(), "fio verify_state_load found lost or corrupt acknowledged writes:\n" + verify.out());
            Root.sh("umount", rig.mnt.toString());
            Root.Result fsck = Root.run(600, "e2fsck", "-fn", dev2.toString());
            assertEquals(0, fsck.exit(), "e2fsck not clean after the crash:\n" + fsck.out());
            MirrorRig.Result v = rig.ctl("verify", "kill");
            assertEquals(0, v.exit(), "legs differ after crash repair: " + v.out() + v.err());
            rig.ok("stop", "kill");
            String[] h = rig.legHashes();
            assertEquals(h[0], h[1]);
        }
    }
}
