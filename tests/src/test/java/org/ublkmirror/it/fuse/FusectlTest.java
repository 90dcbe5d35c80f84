package org.ublkmirror.it.fuse;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The FUSE frontend mounts fusectl (/sys/fs/fuse/connections, for its watchdog's abort) where the
 * machine has not, and unmounts it again when its last device closes: the machine is left as it
 * was found. A fusectl the machine had mounted before stays.
 */
class FusectlTest {
    static final Path FUSECTL = Path.of("/sys/fs/fuse/connections");
    private boolean mountedBefore;

    @BeforeAll
    static void machine() throws IOException {
        Root.require("losetup");
    }

    static boolean mounted() throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/mounts"))) {
            String[] f = line.split(" ");
            if (f.length > 2 && f[1].equals(FUSECTL.toString()) && f[2].equals("fusectl")) return true;
        }
        return false;
    }

    static void mount() throws Exception {
        Root.Result r = Root.run(30, "mount", "-t", "fusectl", "fusectl", FUSECTL.toString());
        assertEquals(0, r.exit(), "mount fusectl: " + r.out());
    }

    static void umount() throws Exception {
        Root.Result r = Root.run(30, "umount", FUSECTL.toString());
        assertEquals(0, r.exit(), "umount fusectl: " + r.out());
    }

    @BeforeEach
    void remember() throws Exception {
        mountedBefore = mounted();
        if (mountedBefore) {
            try (var dirs = Files.list(FUSECTL)) {
                assertFalse(dirs.findAny().isPresent(),
                        "another FUSE connection is open on this machine: fusectl cannot be taken away for this test");
            }
        }
    }

    @AfterEach
    void restore() throws Exception {
        if (mountedBefore && !mounted()) mount();
        if (!mountedBefore && mounted()) umount();
    }

    @Test
    void aFusectlTheFrontendMountedIsUnmountedWhenItsLastDeviceCloses() throws Exception {
        if (mounted()) umount();
        Rig a = Rig.start(8L << 20);
        Rig b = null;
        try {
            assertTrue(mounted(), "fusectl mounted by the frontend");
            assertTrue(Files.isDirectory(FUSECTL.resolve(Long.toString(a.dev.connectionId()))), "the connection's directory");
            b = Rig.start(8L << 20);
            a.close();
            a = null;
            assertTrue(mounted(), "still mounted while a device of this process serves");
            b.close();
            b = null;
            assertFalse(mounted(), "unmounted after the last device closed");
        } finally {
            if (a != null) a.close();
            if (b != null) b.close();
        }
    }

    @Test
    void aFusectlTheMachineHadStaysMounted() throws Exception {
        if (!mounted()) mount();
        Rig a = Rig.start(8L << 20);
        a.close();
        assertTrue(mounted(), "fusectl mounted before the device stays mounted after it");
    }
}
