package org.ublkmirror.it.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.it.fuse.Root;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** A mirrored device on this kernel (FUSE + loop): ext4 on it, fio verify through it, legs identical. */
class MirrorDeviceTest {

    @Test
    void ext4FilesSurviveDroppedCachesAndBothLegsHoldThem() throws Exception {
        try (MirrorRig rig = new MirrorRig("dev")) {
            rig.create("256M");
            Path dev = rig.start();
            assertTrue(dev.toString().startsWith("/dev/loop"), "device " + dev);
            Root.sh("mkfs.ext4", "-q", "-F", dev.toString());
            rig.mount(dev);
            Random r = new Random(7);
            Map<String, String> sums = new HashMap<>();
            for (int i = 0; i < 12; i++) {
                byte[] data = new byte[(1 + r.nextInt(4)) << 20];
                r.nextBytes(data);
                Path f = rig.mnt.resolve("f" + i);
                Files.write(f, data);
                sums.put(f.getFileName().toString(), MirrorRig.sha256(f));
            }
            Root.dropCaches();
            for (Map.Entry<String, String> e : sums.entrySet()) {
                assertEquals(e.getValue(), MirrorRig.sha256(rig.mnt.resolve(e.getKey())), e.getKey() + " changed");
            }
            String status = rig.ok("status", "dev", "--json");
            assertTrue(status.contains("\"state\": \"mirrored\""), status);
            Root.sh("umount", rig.mnt.toString());
            assertEquals(0, Root.run(300, "e2fsck", "-fn", dev.toString()).exit(), "e2fsck found errors");
            assertEquals(0, rig.ctl("verify", "dev").exit(), "online verify");
            rig.ok("stop", "dev");
            String[] h = rig.legHashes();
            assertEquals(h[0], h[1], "legs differ after a clean run");
            MirrorRig.Result v = rig.ctl("verify", "dev");
            assertEquals(0, v.exit(), v.out() + v.err());
            assertTrue(v.out().contains("legs identical"), v.out());
        }
    }

    @Test
    void fioVerifyThroughTheMirror() throws Exception {
        try (MirrorRig rig = new MirrorRig("fio")) {
            rig.create("256M");
            Path dev = rig.start();
            Root.Result fio = Root.run(600, "fio", "--name=v", "--filename=" + dev, "--rw=randwrite", "--bs=4k",
                    "--iodepth=16", "--ioengine=libaio", "--direct=1", "--size=64M", "--verify=crc32c",
                    "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0");
            assertEquals(0, fio.exit(), fio.out());
            assertFalse(fio.out().contains("verify: bad"), fio.out());
            assertEquals(0, rig.ctl("verify", "fio").exit(), "online verify after fio");
            rig.ok("stop", "fio");
            String[] h = rig.legHashes();
            assertEquals(h[0], h[1], "legs differ after fio");
        }
    }
}
