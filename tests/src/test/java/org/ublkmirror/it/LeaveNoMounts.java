package org.ublkmirror.it;

import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The FUSE frontend mounts fusectl (its watchdog aborts hung connections through it) when it is
 * not mounted. A test run leaves the machine as it found it: if fusectl was not mounted before a
 * test class, it is unmounted after it. Registered for every test class (junit-platform.properties).
 */
public final class LeaveNoMounts implements BeforeAllCallback, AfterAllCallback {
    private static final String FUSECTL = "/sys/fs/fuse/connections";
    private static final ExtensionContext.Namespace NS = ExtensionContext.Namespace.create(LeaveNoMounts.class);

    static boolean fusectlMounted() throws Exception {
        return Files.readAllLines(Path.of("/proc/self/mounts")).stream().anyMatch(l -> l.split(" ")[1].equals(FUSECTL));
    }

    @Override
    public void beforeAll(ExtensionContext ctx) throws Exception {
        ctx.getStore(NS).put("fusectl", fusectlMounted());
    }

    @Override
    public void afterAll(ExtensionContext ctx) throws Exception {
        Boolean before = ctx.getStore(NS).get("fusectl", Boolean.class);
        if (Boolean.FALSE.equals(before) && fusectlMounted()) {
            new ProcessBuilder("umount", FUSECTL).inheritIO().start().waitFor();
        }
    }
}
