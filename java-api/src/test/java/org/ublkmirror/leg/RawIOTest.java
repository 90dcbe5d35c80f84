package org.ublkmirror.leg;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.sys.LibC;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** FileStore's own-descriptor I/O (-Dublkmirror.rawio=true), called directly: it is off by default, so no store test reaches it. */
class RawIOTest {
    private static final int O_RDONLY = 0, O_RDWR = 2;

    @TempDir
    Path dir;

    /** A descriptor RawIO opened, closed at the end of a try block. */
    private record Fd(int fd) implements AutoCloseable {
        static Fd open(Path f, int flags) {
            int fd = RawIO.open(f, flags);
            assertTrue(fd >= 0, "open " + f);
            return new Fd(fd);
        }

        @Override
        public void close() {
            LibC.get().close(fd);
        }
    }

    private static ByteBuffer pattern(int len, int seed) {
        ByteBuffer b = ByteBuffer.allocateDirect(len);
        for (int i = 0; i < len; i++) b.put(i, (byte) (i * 31 + seed));
        return b;
    }

    @Test
    void writesAndReadsBackAtAnOffset() throws IOException {
        Path f = dir.resolve("leg");
        Files.write(f, new byte[64 << 10]);
        try (Fd d = Fd.open(f, O_RDWR)) {
            ByteBuffer src = pattern(12 << 10, 7);
            RawIO.pwriteFully(d.fd(), src, 4096, f);
            assertFalse(src.hasRemaining(), "the whole buffer was written");
            ByteBuffer back = ByteBuffer.allocateDirect(12 << 10);
            RawIO.preadFully(d.fd(), back, 4096, f);
            assertFalse(back.hasRemaining());
            assertEquals(src.flip(), back.flip());
        }
        byte[] onDisk = Files.readAllBytes(f);
        byte[] expect = new byte[12 << 10];
        pattern(12 << 10, 7).get(expect);
        assertArrayEquals(expect, Arrays.copyOfRange(onDisk, 4096, 4096 + (12 << 10)));
        assertArrayEquals(new byte[4096], Arrays.copyOfRange(onDisk, 0, 4096), "bytes before the write untouched");
    }

    @Test
    void aReadPastTheEndSaysWhere() throws IOException {
        Path f = dir.resolve("short");
        Files.write(f, new byte[8192]);
        try (Fd d = Fd.open(f, O_RDONLY)) {
            ByteBuffer b = ByteBuffer.allocateDirect(8192);
            EOFException e = assertThrows(EOFException.class, () -> RawIO.preadFully(d.fd(), b, 4096, f));
            assertEquals("unexpected end of " + f + " at 8192", e.getMessage());
            assertEquals(4096, b.position(), "what was there was read");
        }
    }

    @Test
    void aRefusedWriteNamesTheFileAndTheErrorAndChangesNothing() throws IOException {
        Path f = dir.resolve("ro");
        Files.write(f, new byte[8192]);
        try (Fd d = Fd.open(f, O_RDONLY)) {
            IOException e = assertThrows(IOException.class, () -> RawIO.pwriteFully(d.fd(), pattern(4096, 1), 0, f));
            assertEquals("write of 4096 bytes at 0 to " + f + " failed: Bad file descriptor", e.getMessage());
        }
        assertArrayEquals(new byte[8192], Files.readAllBytes(f));
    }
}
