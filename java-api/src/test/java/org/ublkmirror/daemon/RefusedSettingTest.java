package org.ublkmirror.daemon;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.frontend.Frontend;
import org.ublkmirror.mirror.Mirror;
import org.ublkmirror.mirror.MirrorConfig;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * A frontend setting from the environment that the frontend does not understand (the ublk
 * frontend's UBLK_MIRROR_* switches) is refused before the mirror is opened: one line, and no byte
 * of either leg changes (opening a mirror writes its superblocks). The ublk side of it runs in
 * the VM (tests/vm/ublk-zero-copy.sh); here a frontend that refuses stands in for it.
 */
class RefusedSettingTest {
    static final String KIND = "refusing-test";
    static final String LINE = "UBLK_MIRROR_TEST=maybe is not understood; use on or off";
    @TempDir
    Path dir;
    final String name = "refused-" + ProcessHandle.current().pid();

    static String sha(Path f) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f)));
    }

    @AfterEach
    void cleanRunDir() throws Exception {
        for (String ext : new String[] {".lock", ".sock", ".pid", ".device"}) Files.deleteIfExists(Daemon.runDir().resolve(name + ext));
    }

    @Test
    void aRefusedSettingIsOneLineBeforeTheMirrorIsOpenedAndChangesNoByte() throws Exception {
        Daemon.register(KIND, new Daemon.FrontendFactory() {
            @Override
            public Frontend start(Mirror mirror, MirrorConfig cfg) {
                throw new AssertionError("a frontend with a refused setting was started");
            }

            @Override
            public String refusedSetting() {
                return LINE;
            }
        });
        Path p = dir.resolve("p.img"), s = dir.resolve("s.img");
        MirrorConfig cfg = new MirrorConfig(name, p, s, null, 1, 60_000);
        Mirror.create(cfg, 16L << 20, 4096, false, null);
        String before = sha(p) + sha(s);
        for (int attempt = 0; attempt < 2; attempt++) { // the second: the first released its lock
            ByteArrayOutputStream log = new ByteArrayOutputStream();
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Daemon.start(cfg, KIND, new Mirror.Options(), false, new PrintStream(log, true, StandardCharsets.UTF_8)));
            assertEquals(LINE, e.getMessage());
            assertEquals("", log.toString(StandardCharsets.UTF_8), "the mirror was opened (a recovery line was logged)");
            assertEquals(before, sha(p) + sha(s), "a refused start changed a leg");
        }
    }
}
