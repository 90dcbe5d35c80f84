package org.ublkmirror.frontend;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;

/**
 * The stable per-mirror name of the device, {@code /dev/disk/by-mirror/NAME -> /dev/ublkbN} (or
 * /dev/loopN). The daemon makes and removes it itself, so it exists with or without udevd (the
 * test VM has none); kmod-shim's udev rule only sets permissions. {@code UBLK_MIRROR_LINK_DIR}
 * moves the directory (tests).
 */
public final class DeviceLink {
    private DeviceLink() {
    }

    public static Path dir() {
        String d = System.getenv("UBLK_MIRROR_LINK_DIR");
        return Path.of(d != null && !d.isEmpty() ? d : "/dev/disk/by-mirror");
    }

    public static Path of(String name) {
        return dir().resolve(name);
    }

    /** Points the mirror's link at {@code device}; returns the link, or null when it could not be made (logged by the caller). */
    public static Path create(String name, String device) {
        Path link = of(name);
        try {
            Files.createDirectories(link.getParent());
            Files.deleteIfExists(link);
            Files.createSymbolicLink(link, Path.of(device));
            return link;
        } catch (IOException | UnsupportedOperationException e) {
            return null;
        }
    }

    /** Removes the link if it still points at {@code device}. */
    public static void remove(String name, String device) {
        Path link = of(name);
        try {
            if (Files.isSymbolicLink(link) && Files.readSymbolicLink(link).toString().equals(device)) Files.delete(link);
        } catch (IOException e) {
            // someone else's link now, or gone: leave it
        }
    }

    public static boolean exists(String name) {
        return Files.exists(of(name), LinkOption.NOFOLLOW_LINKS);
    }
}
