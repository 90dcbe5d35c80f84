package org.ublkmirror.leg;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.sys.LibC;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A write source that has the kernel copy its bytes ({@link WriteSource#copyTo}; ublk zero copy
 * reads the request through /dev/ublkcN) writes a leg on a memory file system straight into a
 * mapping of the file, and a leg on a disk file system never so. Here the kernel copy is a pread
 * from a file of the same bytes into the mapping's address: the same fault handling (a fault in
 * the destination is the kernel's, EFAULT, never SIGBUS). A leg cut under the mapping: the copy
 * fails, the write goes through the buffer and lands, and the JVM lives on.
 */
class FileStoreMappedCopyTest {
    static final Path SHM = Path.of("/dev/shm");
    static final boolean ARM64 = "aarch64".equals(System.getProperty("os.arch"));
    static final long SYS_PREAD64 = ARM64 ? 67 : 17;
    @TempDir
    Path disk;
    Path shm;
    Path bytesFile;

    @BeforeEach
    void dirs() throws IOException {
        assertTrue(Files.isDirectory(SHM), "/dev/shm is missing: the memory-file-system case cannot be tested");
        shm = Files.createTempDirectory(SHM, "filestore-mapped-copy");
        assertTrue(FileStore.onMemoryFileSystem(Files.createFile(shm.resolve("probe"))),
                "/dev/shm is not a tmpfs here: the memory-file-system case cannot be tested");
        bytesFile = disk.resolve("bytes");
    }

    @AfterEach
    void clean() throws IOException {
        if (shm == null) return;
        try (var s = Files.list(shm)) {
            for (Path p : (Iterable<Path>) s::iterator) Files.deleteIfExists(p);
        }
        Files.deleteIfExists(shm);
    }

    /** A source whose bytes sit in a file: copyTo is a pread into the address (a kernel copy). */
    final class KernelCopySource implements WriteSource {
        final byte[] bytes;
        final int fd;
        int copies, copyFailures, buffers;

        KernelCopySource(byte[] bytes) throws IOException {
            this.bytes = bytes;
            Files.write(bytesFile, bytes);
            fd = LibC.get().open(bytesFile.toString(), LibC.O_RDONLY | LibC.O_CLOEXEC, 0);
            assertTrue(fd >= 0, "open " + bytesFile);
        }

        @Override
        public int length() {
            return bytes.length;
        }

        @Override
        public ByteBuffer buffer() {
            buffers++;
            ByteBuffer d = ByteBuffer.allocateDirect(bytes.length);
            d.put(bytes).flip();
            return d;
        }

        @Override
        public boolean writeTo(int fd, long pos) {
            return false;
        }

        @Override
        public boolean copyTo(long address) {
            long r = LibC.get().syscall(SYS_PREAD64, fd, address, bytes.length, 0, 0, 0);
            if (r != bytes.length) {
                copyFailures++;
                return false;
            }
            copies++;
            return true;
        }

        void close() {
            LibC.get().close(fd);
        }
    }

    static byte[] random(int len, long seed) {
        byte[] b = new byte[len];
        new Random(seed).nextBytes(b);
        return b;
    }

    static byte[] fileBytes(Path f, long pos, int len) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(len);
        try (FileChannel c = FileChannel.open(f, StandardOpenOption.READ)) {
            while (b.hasRemaining()) if (c.read(b, pos + b.position()) < 0) break;
        }
        return b.array();
    }

    @Test
    void aLegOnTmpfsTakesTheKernelCopyIntoItsMappingAndHoldsExactlyTheBytes() throws IOException {
        Path f = shm.resolve("leg.img");
        try (FileStore s = FileStore.createSparse(f, 8L << 20)) {
            assertTrue(s.takesMappedCopies(), "a tmpfs leg takes mapped copies");
        }
        try (FileStore s = FileStore.open(f)) {
            assertTrue(s.takesMappedCopies(), "a tmpfs leg opened again takes mapped copies");
            byte[] a = random(4096, 1), b = random(65536, 2), c = random(4096, 3);
            KernelCopySource sa = new KernelCopySource(a);
            s.write(0, sa, false);
            sa.close();
            KernelCopySource sb = new KernelCopySource(b);
            s.write((8L << 20) - 65536, sb, false); // the file's last bytes
            sb.close();
            KernelCopySource sc = new KernelCopySource(c);
            s.write(4096 * 7, sc, true); // FUA: on tmpfs in the page cache is as durable as it gets
            sc.close();
            assertEquals(3, sa.copies + sb.copies + sc.copies, "each write one kernel copy into the mapping");
            assertEquals(0, sa.buffers + sb.buffers + sc.buffers, "no write went through a buffer");
            assertArrayEquals(a, fileBytes(f, 0, 4096));
            assertArrayEquals(b, fileBytes(f, (8L << 20) - 65536, 65536));
            assertArrayEquals(c, fileBytes(f, 4096 * 7, 4096));
            assertArrayEquals(new byte[4096], fileBytes(f, 4096, 4096), "bytes between the writes untouched");
            // what a read through the store sees is the same page cache
            ByteBuffer r = ByteBuffer.allocateDirect(4096);
            s.read(0, r);
            r.flip();
            byte[] got = new byte[4096];
            r.get(got);
            assertArrayEquals(a, got);
            assertEquals(8L << 20, Files.size(f), "the file keeps its size");
        }
    }

    @Test
    void aLegOnADiskFileSystemNeverTakesAMappedCopy() throws IOException {
        Path f = disk.resolve("leg.img");
        String type = Files.getFileStore(disk).type();
        assertFalse(type.equals("tmpfs") || type.equals("ramfs"), "the test's disk directory is on " + type);
        try (FileStore s = FileStore.createSparse(f, 1L << 20)) {
            assertFalse(s.takesMappedCopies());
            byte[] a = random(8192, 4);
            KernelCopySource sa = new KernelCopySource(a);
            s.write(8192, sa, false);
            sa.close();
            assertEquals(0, sa.copies + sa.copyFailures, "copyTo never asked");
            assertEquals(1, sa.buffers, "written from the buffer");
            assertArrayEquals(a, fileBytes(f, 8192, 8192));
        }
    }

    @Test
    void aLegCutUnderTheMappingFailsTheCopyNotTheJvmAndTheWriteStillLands() throws IOException {
        Path f = shm.resolve("leg.img");
        long size = 4L << 20;
        try (FileStore s = FileStore.createSparse(f, size)) {
            byte[] a = random(4096, 5);
            KernelCopySource first = new KernelCopySource(a);
            s.write(0, first, false); // the mapping is made
            first.close();
            assertEquals(1, first.copies);
            // someone cuts the leg to 1 MiB under the running store
            try (FileChannel c = FileChannel.open(f, StandardOpenOption.WRITE)) {
                c.truncate(1L << 20);
            }
            byte[] b = random(16384, 6);
            KernelCopySource past = new KernelCopySource(b);
            s.write(3L << 20, past, false);
            past.close();
            assertEquals(0, past.copies, "the copy past the cut did not succeed");
            assertEquals(1, past.copyFailures, "the copy past the cut failed (EFAULT), no signal");
            assertEquals(1, past.buffers, "the write went through the buffer instead");
            assertEquals((3L << 20) + 16384, Files.size(f), "the pwrite grew the file to the write's end");
            assertArrayEquals(b, fileBytes(f, 3L << 20, 16384), "the write past the cut landed");
            // below the cut the mapping still serves, and nothing fails later (no deferred SIGBUS)
            byte[] c = random(4096, 7);
            KernelCopySource below = new KernelCopySource(c);
            s.write(4096, below, false);
            below.close();
            assertEquals(1, below.copies);
            assertArrayEquals(a, fileBytes(f, 0, 4096));
            assertArrayEquals(c, fileBytes(f, 4096, 4096));
            // the file grown back to its size: the whole mapping serves again
            try (FileChannel ch = FileChannel.open(f, StandardOpenOption.WRITE)) {
                ch.truncate(size);
                ch.write(ByteBuffer.allocate(1), size - 1);
            }
            byte[] d = random(8192, 8);
            KernelCopySource again = new KernelCopySource(d);
            s.write(2L << 20, again, false);
            again.close();
            assertEquals(1, again.copies, "past the old cut the copy serves again once the file is whole");
            assertArrayEquals(d, fileBytes(f, 2L << 20, 8192));
            assertArrayEquals(b, fileBytes(f, 3L << 20, 16384));
        }
    }

    @Test
    void aClosedLegRefusesTheWriteAndChangesNoByte() throws IOException {
        Path f = shm.resolve("leg.img");
        FileStore s = FileStore.createSparse(f, 1L << 20);
        KernelCopySource first = new KernelCopySource(random(4096, 9));
        s.write(0, first, false);
        first.close();
        s.close(); // unmaps
        byte[] whole = fileBytes(f, 0, 1 << 20);
        KernelCopySource late = new KernelCopySource(random(4096, 10));
        assertThrows(ClosedChannelException.class, () -> s.write(0, late, false));
        late.close();
        assertEquals(0, late.copies, "nothing copied into a closed leg's mapping");
        assertArrayEquals(whole, fileBytes(f, 0, 1 << 20), "no byte changed");
    }
}
