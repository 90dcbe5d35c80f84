package org.ublkmirror.frontend.fuse;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** The loop driver's control plane, through losetup(8) and /sys/block/loopN/loop. */
final class LoopDevice {
    private LoopDevice() {
    }

    /**
     * Attaches a free loop device to {@code file}; returns /dev/loopN.
     *
     * @param directIo the loop device opens the file with O_DIRECT: with FUSE, this is what lets
     *                 many requests be in flight (FUSE_ASYNC_DIO), and it keeps the data out of
     *                 the page cache a second time.
     */
    static Path attach(Path file, int sectorSize, boolean directIo) throws IOException {
        List<String> cmd = new ArrayList<>(List.of("losetup", "--find", "--show"));
        cmd.add("--direct-io=" + (directIo ? "on" : "off"));
        cmd.add("--sector-size");
        cmd.add(Integer.toString(sectorSize));
        cmd.add(file.toString());
        String out = run(cmd).trim();
        if (!out.startsWith("/dev/loop")) {
            throw new IOException("losetup printed no device: " + out);
        }
        return Path.of(out);
    }

    /** Detaches (deferred by the kernel while someone still has the device open). */
    static void detach(Path device) throws IOException {
        run(List.of("losetup", "--detach", device.toString()));
    }

    /** The file the device is bound to, or null when it is not bound. */
    static String backingFile(Path device) {
        Path p = Path.of("/sys/block", device.getFileName().toString(), "loop", "backing_file");
        try {
            return Files.readString(p).trim();
        } catch (NoSuchFileException e) {
            return null;
        } catch (IOException e) {
            return null;
        }
    }

    /** Whether direct I/O is on (/sys/block/loopN/loop/dio). */
    static boolean directIo(Path device) {
        Path p = Path.of("/sys/block", device.getFileName().toString(), "loop", "dio");
        try {
            return Files.readString(p).trim().equals("1");
        } catch (IOException e) {
            return false;
        }
    }

    static String run(List<String> cmd) throws IOException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        p.getOutputStream().close();
        String out;
        try (InputStream in = p.getInputStream()) {
            ByteArrayOutputStream b = new ByteArrayOutputStream();
            in.transferTo(b);
            out = b.toString(StandardCharsets.UTF_8);
        }
        try {
            if (!p.waitFor(60, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IOException(String.join(" ", cmd) + ": timed out");
            }
        } catch (InterruptedException e) {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
            throw new IOException(String.join(" ", cmd) + ": interrupted", e);
        }
        if (p.exitValue() != 0) {
            throw new IOException(String.join(" ", cmd) + " failed (exit " + p.exitValue() + "): " + out.trim());
        }
        return out;
    }
}
