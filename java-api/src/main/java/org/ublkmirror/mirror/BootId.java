package org.ublkmirror.mirror;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.UUID;

/**
 * This boot of the machine. A leg left dirty by the same boot was left by a daemon crash (the
 * page cache survived: the tag tables are complete); by another boot, by power loss or a
 * reboot (only flushed data survived: the intent record bounds the repair).
 */
public final class BootId {
    private BootId() {
    }

    public static UUID current() {
        try {
            return UUID.fromString(Files.readString(Path.of("/proc/sys/kernel/random/boot_id")).trim());
        } catch (IOException | IllegalArgumentException e) {
            return new UUID(0, 1); // unknown: treated as a new boot every time, the safe side
        }
    }
}
