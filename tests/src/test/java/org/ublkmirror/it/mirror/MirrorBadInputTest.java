package org.ublkmirror.it.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.it.fuse.Root;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** Bad input at the daemon level: one clear line, a non-zero exit, nothing lost or changed. */
class MirrorBadInputTest {

    @Test
    void startingTwiceIsRefused() throws Exception {
        try (MirrorRig rig = new MirrorRig("twice")) {
            rig.create("64M");
            Path dev = rig.start();
            MirrorRig.Result r = rig.ctl("start", "twice", "--frontend", "fuse");
            assertEquals(4, r.exit(), r.out() + r.err());
            assertTrue(r.err().contains("already running"), r.err());
            assertEquals(1, r.err().strip().lines().count(), "one line: " + r.err());
            assertTrue(Files.exists(dev), "the running device must survive the refused start");
            assertEquals(0, rig.ctl("status", "twice").exit());
        }
    }

    @Test
    void stoppingWhatIsNotRunningIsRefused() throws Exception {
        try (MirrorRig rig = new MirrorRig("idle")) {
            rig.create("64M");
            MirrorRig.Result r = rig.ctl("stop", "idle");
            assertEquals(4, r.exit(), r.out() + r.err());
            assertTrue(r.err().contains("is not running"), r.err());
            MirrorRig.Result u = rig.ctl("stop", "nosuch");
            assertEquals(3, u.exit());
            assertTrue(u.err().contains("no mirror named 'nosuch'"), u.err());
        }
    }

    @Test
    void aLegOfAnotherMirrorIsRefusedAndNothingChanges() throws Exception {
        try (MirrorRig a = new MirrorRig("a"); MirrorRig b = new MirrorRig("b")) {
            a.create("64M");
            b.create("64M");
            // point a's secondary at b's secondary
            Path conf = a.conf.resolve("a.conf");
            String c = Files.readString(conf).replace(a.secondary().toString(), b.secondary().toString());
            Files.writeString(conf, c);
            String before = MirrorRig.sha256(b.secondary()) + MirrorRig.sha256(a.primary());
            MirrorRig.Result r = a.ctl("start", "a", "--frontend", "fuse");
            assertEquals(3, r.exit(), r.out() + r.err());
            assertTrue(r.err().contains("belongs to another mirror"), r.err());
            assertEquals(before, MirrorRig.sha256(b.secondary()) + MirrorRig.sha256(a.primary()), "a refused start changed a leg");
            assertFalse(Files.exists(a.run.resolve("a.sock")), "no daemon may be left running");
        }
    }

    @Test
    void secondaryDeletedUnderARunningMirrorLosesNothing() throws Exception {
        try (MirrorRig rig = new MirrorRig("gone")) {
            rig.create("128M");
            Path dev = rig.start();
            Root.sh("mkfs.ext4", "-q", "-F", dev.toString());
            rig.mount(dev);
            Root.sh("dd", "if=/dev/urandom", "of=" + rig.mnt.resolve("a"), "bs=1M", "count=8", "conv=fsync", "status=none");
            Files.delete(rig.secondary());
            Root.sh("dd", "if=/dev/urandom", "of=" + rig.mnt.resolve("b"), "bs=1M", "count=8", "conv=fsync", "status=none");
            String sa = MirrorRig.sha256(rig.mnt.resolve("a")), sb = MirrorRig.sha256(rig.mnt.resolve("b"));
            Root.sh("umount", rig.mnt.toString());
            rig.ok("stop", "gone");
            // restart without the secondary: degraded, clear about it, data intact
            Path dev2 = rig.start();
            String st = rig.ok("status", "gone");
            assertTrue(st.contains("degraded"), st);
            assertTrue(st.contains("secondary") && st.contains("offline"), st);
            rig.mount(dev2);
            assertEquals(sa, MirrorRig.sha256(rig.mnt.resolve("a")));
            assertEquals(sb, MirrorRig.sha256(rig.mnt.resolve("b")));
            MirrorRig.Result v = rig.ctl("verify", "gone");
            assertNotEquals(0, v.exit(), "verify without a secondary cannot say identical");
            assertEquals(1, v.err().strip().lines().count(), v.err());
        }
    }
}
