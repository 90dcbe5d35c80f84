package org.ublkmirror.it.fuse;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** ext4 on the FUSE + loop device: files survive a cache drop, fsck is clean, the backing file holds the bytes. */
class FuseExt4Test {

    @BeforeAll
    static void machine() throws IOException {
        Root.require("losetup", "mkfs.ext4", "e2fsck", "mount", "umount", "fio");
    }

    @Test
    void ext4RoundTripFsckAndBackingFileMatchesDevice() throws Exception {
        Rig started;
        try (Rig rig = Rig.start(256L << 20)) {
            started = rig;
            assertTrue(rig.dev.isAttached(), "loop device bound to " + rig.dev.backingFile());
            assertEquals("1", Files.readString(Path.of("/sys/block", rig.dev.device().getFileName().toString(), "loop", "dio")).trim(),
                    "loop direct I/O on");
            Root.sh("mkfs.ext4", "-q", "-F", "-b", "4096", rig.device());
            Files.createDirectories(rig.fsMount);
            Root.sh("mount", rig.device(), rig.fsMount.toString());

            Random rnd = new Random(42);
            Map<Path, String> sums = new LinkedHashMap<>();
            for (int i = 0; i < 4; i++) {
                byte[] data = new byte[(1 << 20) + rnd.nextInt(4 << 20)]; // 1-5 MiB, odd sizes
                rnd.nextBytes(data);
                Path f = rig.fsMount.resolve("file" + i + ".bin");
                Files.write(f, data);
                sums.put(f, sha256(data));
            }
            Root.sh("sync");
            Root.dropCaches();
            for (Map.Entry<Path, String> e : sums.entrySet()) {
                assertEquals(e.getValue(), sha256(Files.readAllBytes(e.getKey())), "content of " + e.getKey());
            }
            Root.sh("umount", rig.fsMount.toString());
            assertFalse(Root.isMountPoint(rig.fsMount));

            Root.Result fsck = Root.run(300, "e2fsck", "-fn", rig.device());
            assertEquals(0, fsck.exit(), "e2fsck -fn:\n" + fsck.out());

            Root.dropCaches();
            assertDeviceEqualsBacking(rig.dev.device(), rig.target.path(), rig.target.sizeBytes());
            assertEquals(0, rig.dev.errorCount(), "target errors");
        }
        // close() left nothing behind: no loop device bound to our file, no FUSE mount.
        assertFalse(started.dev.isAttached(), "loop device detached");
        assertFalse(Root.isMountPoint(started.dev.mountDir()), "FUSE unmounted");
        assertFalse(Root.run(30, "losetup", "-a").out().contains(started.dir.toString()), "losetup -a clean");
    }

    /** Reads the block device and the backing file side by side, 1 MiB at a time. */
    static void assertDeviceEqualsBacking(Path device, Path backing, long size) throws IOException {
        try (FileChannel d = FileChannel.open(device, StandardOpenOption.READ);
             FileChannel b = FileChannel.open(backing, StandardOpenOption.READ)) {
            ByteBuffer x = ByteBuffer.allocate(1 << 20), y = ByteBuffer.allocate(1 << 20);
            long pos = 0;
            while (pos < size) {
                x.clear();
                y.clear();
                readFully(d, x, pos);
                readFully(b, y, pos);
                if (!x.equals(y)) {
                    int i = 0;
                    while (x.get(i) == y.get(i)) {
                        i++;
                    }
                    throw new AssertionError("device and backing file differ at byte " + (pos + i));
                }
                pos += x.capacity();
            }
            assertEquals(size, pos);
        }
    }

    private static void readFully(FileChannel ch, ByteBuffer buf, long pos) throws IOException {
        while (buf.hasRemaining()) {
            int n = ch.read(buf, pos + buf.position());
            if (n < 0) {
                throw new IOException("short read at " + (pos + buf.position()));
            }
        }
        buf.flip();
    }

    static String sha256(byte[] data) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
    }
}
