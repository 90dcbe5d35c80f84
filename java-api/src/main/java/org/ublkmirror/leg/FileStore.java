package org.ublkmirror.leg;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * A regular file or a block device. FUA writes go through a second channel opened with
 * O_DSYNC, so they sync only their own range (the kernel's vfs_fsync_range), not every dirty
 * page of the file. Discard punches a hole through libc fallocate where the file system allows,
 * and writes zeroes otherwise.
 */
public final class FileStore implements Store {
    private final Path path;
    private final FileChannel ch;
    private final FileChannel dsync;
    private final long size;
    private final boolean blockDevice;

    private FileStore(Path path, FileChannel ch, FileChannel dsync, long size, boolean blockDevice) {
        this.path = path;
        this.ch = ch;
        this.dsync = dsync;
        this.size = size;
        this.blockDevice = blockDevice;
    }

    /** Opens an existing file or block device for reading and writing. */
    public static FileStore open(Path path) throws IOException {
        if (!Files.exists(path)) {
            throw new NoSuchFileException(path.toString(), null, "no such file or device");
        }
        FileChannel ch = FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE);
        FileChannel ds = FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE, StandardOpenOption.DSYNC);
        boolean dev = !Files.isRegularFile(path);
        long size = dev ? blockDeviceSize(ch) : ch.size();
        return new FileStore(path, ch, ds, size, dev);
    }

    /** Opens read-only (verify, status, log: commands that must change nothing). */
    public static FileStore openReadOnly(Path path) throws IOException {
        if (!Files.exists(path)) {
            throw new NoSuchFileException(path.toString(), null, "no such file or device");
        }
        FileChannel ch = FileChannel.open(path, StandardOpenOption.READ);
        boolean dev = !Files.isRegularFile(path);
        long size = dev ? blockDeviceSize(ch) : ch.size();
        return new FileStore(path, ch, null, size, dev);
    }

    /** Creates a sparse file of {@code size} bytes; fails if it exists. */
    public static FileStore createSparse(Path path, long size) throws IOException {
        try (FileChannel c = FileChannel.open(path, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            if (size > 0) {
                c.write(ByteBuffer.allocate(1), size - 1);
            }
        }
        return open(path);
    }

    private static long blockDeviceSize(FileChannel ch) throws IOException {
        // A block device's FileChannel.size() is 0; seeking to its end gives the size.
        long s = ch.size();
        if (s > 0) {
            return s;
        }
        ByteBuffer one = ByteBuffer.allocate(1);
        long lo = 0, hi = 1L << 50;
        while (lo < hi) { // the largest readable offset + 1, by bisection; a few dozen reads once
            long mid = (lo + hi + 1) >>> 1;
            one.clear();
            if (ch.read(one, mid - 1) > 0) lo = mid; else hi = mid - 1;
        }
        return lo;
    }

    public Path path() {
        return path;
    }

    public boolean isBlockDevice() {
        return blockDevice;
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public void read(long pos, ByteBuffer dst) throws IOException {
        if (pos < 0 || pos + dst.remaining() > size) {
            throw new EOFException("read of " + dst.remaining() + " bytes at " + pos + " past the end of " + path + " (" + size + " bytes)");
        }
        while (dst.hasRemaining()) {
            int n = ch.read(dst, pos);
            if (n < 0) {
                throw new EOFException("unexpected end of " + path + " at " + pos);
            }
            pos += n;
        }
    }

    @Override
    public void write(long pos, ByteBuffer src, boolean fua) throws IOException {
        if (pos < 0 || pos + src.remaining() > size) {
            throw new EOFException("write of " + src.remaining() + " bytes at " + pos + " past the end of " + path + " (" + size + " bytes)");
        }
        FileChannel c = fua && dsync != null ? dsync : ch;
        while (src.hasRemaining()) {
            pos += c.write(src, pos);
        }
    }

    @Override
    public void flush() throws IOException {
        ch.force(false); // fsync also writes back pages dirtied through a shared mapping
    }

    @Override
    public java.nio.MappedByteBuffer map(long pos, long len) throws IOException {
        if (dsync == null || pos < 0 || pos + len > size || len > Integer.MAX_VALUE) {
            return null; // read-only, or not mappable in one piece
        }
        return ch.map(FileChannel.MapMode.READ_WRITE, pos, len);
    }

    @Override
    public void discard(long pos, long len) throws IOException {
        if (pos < 0 || pos + len > size) {
            throw new EOFException("discard of " + len + " bytes at " + pos + " past the end of " + path);
        }
        if (!blockDevice && Fallocate.punchHole(path, ch, pos, len)) {
            return;
        }
        ByteBuffer zero = ByteBuffer.allocateDirect((int) Math.min(len, 1 << 20));
        while (len > 0) {
            zero.clear().limit((int) Math.min(len, zero.capacity()));
            int n = zero.remaining();
            write(pos, zero, false);
            pos += n;
            len -= n;
        }
    }

    @Override
    public String describe() {
        return path.toString();
    }

    @Override
    public void close() throws IOException {
        try {
            ch.close();
        } finally {
            if (dsync != null) dsync.close();
        }
    }
}
