package org.ublkmirror.it.fuse;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.IOException;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** fio writes random 4 KiB blocks at QD16 with crc32c headers through the device, then verifies them. */
class FuseFioVerifyTest {

    @BeforeAll
    static void machine() throws IOException {
        Root.require("losetup", "fio");
    }

    @Test
    void fioRandwriteVerify() throws Exception {
        try (Rig rig = Rig.start(128L << 20)) {
            Root.Result r = Root.run(600, "fio", "--name=v", "--filename=" + rig.device(), "--rw=randwrite",
                    "--bs=4k", "--iodepth=16", "--ioengine=libaio", "--direct=1", "--size=64M",
                    "--verify=crc32c", "--do_verify=1", "--verify_state_save=0");
            assertEquals(0, r.exit(), "fio:\n" + r.out());
            assertTrue(r.out().contains("err= 0"), "fio reports err= 0:\n" + r.out());
            assertFalse(r.out().toLowerCase().contains("verify failed") || r.out().contains("bad magic")
                    || r.out().toLowerCase().contains("crc32c: verify"), "no verify errors:\n" + r.out());
            assertEquals(0, rig.dev.errorCount(), "target errors");
            assertTrue(rig.target.writes.get() > 0 && rig.target.reads.get() > 0, "I/O reached the target");
        }
    }
}
