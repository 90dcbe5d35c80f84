package org.ublkmirror.it.fuse;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/** What the root-level tests need from the machine, and running its tools. */
public final class Root {
    private Root() {
    }

    public record Result(int exit, String out) {
    }

    /** What every FUSE root test needs, besides root and /dev/fuse. */
    private static final List<String> BASE_TOOLS = List.of("losetup", "mkfs.ext4", "fio");

    /** Fails loudly (never skips) when the machine cannot run these tests. */
    public static void require(String... tools) throws IOException {
        List<String> missing = new ArrayList<>();
        List<String> all = new ArrayList<>(BASE_TOOLS);
        all.addAll(List.of(tools));
        String status = Files.readString(Path.of("/proc/self/status"));
        if (!status.lines().anyMatch(l -> l.startsWith("Uid:") && l.split("\\s+")[2].equals("0"))) {
            missing.add("root (effective uid 0)");
        }
        if (!Files.exists(Path.of("/dev/fuse"))) {
            missing.add("/dev/fuse");
        }
        for (String t : all) {
            if (!onPath(t) && !missing.contains(t)) {
                missing.add(t);
            }
        }
        if (!missing.isEmpty()) {
            fail("FUSE root tests cannot run here; missing: " + String.join(", ", missing));
        }
    }

    public static boolean onPath(String tool) {
        for (String dir : (System.getenv("PATH") + ":/usr/sbin:/sbin").split(":")) {
            if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, tool))) {
                return true;
            }
        }
        return false;
    }

    public static Result run(long timeoutSeconds, String... cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        p.getOutputStream().close();
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        Thread pump = new Thread(() -> {
            try (InputStream in = p.getInputStream()) {
                in.transferTo(b);
            } catch (IOException ignored) {
                // process ended
            }
        });
        pump.start();
        if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            pump.join(5000);
            fail(String.join(" ", cmd) + " timed out after " + timeoutSeconds + " s: " + b);
        }
        pump.join(5000);
        return new Result(p.exitValue(), b.toString(StandardCharsets.UTF_8));
    }

    /** Runs and asserts exit 0; returns the output. */
    public static String sh(String... cmd) throws IOException, InterruptedException {
        Result r = run(600, cmd);
        assertEquals(0, r.exit(), () -> String.join(" ", cmd) + " failed:\n" + r.out());
        return r.out();
    }

    public static void dropCaches() throws IOException, InterruptedException {
        sh("sync");
        Files.writeString(Path.of("/proc/sys/vm/drop_caches"), "3");
    }

    public static boolean isMountPoint(Path dir) throws IOException {
        String d = dir.toAbsolutePath().normalize().toString();
        return Files.readAllLines(Path.of("/proc/self/mounts")).stream().anyMatch(l -> l.split(" ")[1].equals(d));
    }

    /** Unmounts if mounted; lazily when busy. For finally blocks: never throws. */
    public static void umountQuietly(Path dir) {
        try {
            if (isMountPoint(dir) && run(60, "umount", dir.toString()).exit() != 0) {
                run(60, "umount", "-l", dir.toString());
            }
        } catch (Exception | AssertionError e) {
            System.err.println("cleanup: umount " + dir + ": " + e);
        }
    }

    public static void deleteTree(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException e) {
                    System.err.println("cleanup: " + e);
                }
            });
        } catch (IOException e) {
            System.err.println("cleanup: " + e);
        }
    }
}
