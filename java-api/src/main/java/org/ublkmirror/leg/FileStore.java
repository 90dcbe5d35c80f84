package org.ublkmirror.leg;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import org.ublkmirror.sys.LibC;

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
    /** Our own descriptors for direct-buffer I/O (-1: use the channels); the second with O_DSYNC. */
    private final int fd, dsyncFd;
    /** Handed to a {@link WriteSource} (plain, O_DSYNC): fd and dsyncFd, or our own; -1: none (read-only). */
    private final int sourceFd, sourceDsyncFd;
    /**
     * Experimental (-Dublkmirror.mmapio=true, off by default): reads and non-FUA writes of direct
     * buffers are memory copies through shared mappings of the file, 1 GiB each, made on first
     * use; -Dublkmirror.mmapio=read maps for reads only (writes stay pwrite: a write through a
     * mapping takes a write-protect fault, and ext4 a journal handle, on every page written back). No syscall and no inode lock per I/O; a write to a page already dirty costs a memcpy.
     */
    static final String MMAP_MODE = System.getProperty("ublkmirror.mmapio", "false");
    /** Reads through the mappings: {@code -Dublkmirror.mmapio=true} or {@code =read}. */
    static final boolean MMAP_READS = MMAP_MODE.equals("true") || MMAP_MODE.equals("read");
    /** Non-FUA writes through the mappings too: {@code -Dublkmirror.mmapio=true} only. */
    static final boolean MMAP_WRITES = MMAP_MODE.equals("true");
    private static final int CHUNK_SHIFT = 30;
    private final java.util.concurrent.atomic.AtomicReferenceArray<java.nio.MappedByteBuffer> chunks;
    /**
     * A regular file on a memory file system (tmpfs, ramfs), open for writing: a {@link WriteSource}
     * that can have the kernel copy its bytes ({@link WriteSource#copyTo}: ublk zero copy) writes
     * them straight into a shared mapping of the whole file, made on first use: one copy, and no
     * inode lock, timestamp update or page-cache lookup of a pwrite. Where the page cache is the
     * storage this is the same write; on a disk file system a mapping costs a write-protect fault
     * per page written back, so there it is never used. {@code -Dublkmirror.mappedlegs=false}: never.
     */
    private final boolean memoryFile;
    static final boolean MAPPED_LEGS = !"false".equals(System.getProperty("ublkmirror.mappedlegs"));
    /** The mapping for {@link WriteSource#copyTo}: 0 not made yet, -1 refused; unmapped at close. */
    private volatile long copyMap;
    /** Calls in flight on fd/dsyncFd; negative once closing (a closed descriptor number may be reused). */
    private final java.util.concurrent.atomic.AtomicInteger users = new java.util.concurrent.atomic.AtomicInteger();

    private FileStore(Path path, FileChannel ch, FileChannel dsync, long size, boolean blockDevice) {
        this.path = path;
        this.ch = ch;
        this.dsync = dsync;
        this.size = size;
        this.blockDevice = blockDevice;
        int f = -1, d = -1;
        if (RawIO.AVAILABLE) {
            f = RawIO.open(path, dsync == null ? LibC.O_RDONLY : LibC.O_RDWR);
            if (f >= 0 && dsync != null) {
                d = RawIO.open(path, LibC.O_RDWR | RawIO.O_DSYNC);
                if (d < 0) {
                    LibC.get().close(f);
                    f = -1;
                }
            }
        }
        this.fd = f;
        this.dsyncFd = d;
        // descriptors a WriteSource writes through (ublk: WRITE_FIXED), opened now, beside the
        // channel: the same file even if its path is later unlinked or replaced
        int sf = f, sd = d;
        if (dsync != null && (f < 0 || d < 0)) {
            sf = sd = -1;
            try {
                LibC c = LibC.get();
                sf = c.open(path.toString(), LibC.O_RDWR | LibC.O_CLOEXEC, 0);
                sd = sf < 0 ? -1 : c.open(path.toString(), LibC.O_RDWR | LibC.O_CLOEXEC | RawIO.O_DSYNC, 0);
                if (sd < 0 && sf >= 0) {
                    c.close(sf);
                    sf = -1;
                }
            } catch (LinkageError | RuntimeException e) {
                sf = sd = -1; // no libc binding: such writes go through a buffer
            }
        }
        this.sourceFd = sf;
        this.sourceDsyncFd = sd;
        this.memoryFile = MAPPED_LEGS && !blockDevice && dsync != null && size > 0 && onMemoryFileSystem(path);
        this.chunks = MMAP_READS && dsync != null && size > 0
                ? new java.util.concurrent.atomic.AtomicReferenceArray<>((int) ((size - 1) >>> CHUNK_SHIFT) + 1) : null;
    }

    /** A regular file on tmpfs or ramfs (the page cache is the storage). */
    static boolean onMemoryFileSystem(Path path) {
        try {
            String t = Files.getFileStore(path).type();
            return Files.isRegularFile(path) && (t.equals("tmpfs") || t.equals("ramfs"));
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }

    /** A write source may copy its writes into a mapping of this file ({@link WriteSource#copyTo}). */
    public boolean takesMappedCopies() {
        return memoryFile;
    }

    /** Called inside enter(): the address of the whole file's mapping, or -1. */
    private long copyMap() {
        long a = copyMap;
        if (a != 0) return a;
        synchronized (this) {
            if (copyMap == 0) {
                int f = fd >= 0 ? fd : sourceFd;
                long m = -1;
                try {
                    if (f >= 0) m = LibC.mmap(size, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED, f, 0);
                } catch (LinkageError | RuntimeException e) {
                    m = -1; // no libc binding: writes go through a buffer
                }
                copyMap = m == -1 ? -1 : m;
            }
            return copyMap;
        }
    }

    /**
     * Lets {@code src} copy itself into the mapping at {@code pos} (a memory file system's file);
     * false when it did not (then nothing is promised about those bytes until they are written).
     * Called inside enter().
     */
    private boolean copyIntoMapping(long pos, WriteSource src) throws IOException {
        if (!memoryFile) return false;
        long a = copyMap();
        return a != -1 && src.copyTo(a + pos);
    }

    /** The mapping holding [pos, pos+len), or null if the range crosses a chunk (or mapping is off). */
    private java.nio.MappedByteBuffer chunk(long pos, int len) throws IOException {
        if (chunks == null || (pos >>> CHUNK_SHIFT) != ((pos + len - 1) >>> CHUNK_SHIFT)) return null;
        int i = (int) (pos >>> CHUNK_SHIFT);
        java.nio.MappedByteBuffer m = chunks.get(i);
        if (m == null) {
            synchronized (chunks) {
                m = chunks.get(i);
                if (m == null) {
                    long at = (long) i << CHUNK_SHIFT;
                    m = ch.map(FileChannel.MapMode.READ_WRITE, at, Math.min(1L << CHUNK_SHIFT, size - at));
                    chunks.set(i, m);
                }
            }
        }
        return m;
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
        if (chunks != null && dst.isDirect()) {
            int len = dst.remaining();
            enter();
            try {
                java.nio.MappedByteBuffer m = chunk(pos, len);
                if (m != null) {
                    dst.put(dst.position(), m, (int) (pos & ((1L << CHUNK_SHIFT) - 1)), len);
                    dst.position(dst.position() + len);
                    return;
                }
            } catch (InternalError e) { // SIGBUS: the page could not be read in
                throw new IOException("read of " + len + " bytes at " + pos + " from " + path + " failed: " + e.getMessage(), e);
            } finally {
                users.decrementAndGet();
            }
        }
        if (fd >= 0 && dst.isDirect()) {
            enter();
            try {
                RawIO.preadFully(fd, dst, pos, path);
            } finally {
                users.decrementAndGet();
            }
            return;
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
        if (MMAP_WRITES && chunks != null && !fua && src.isDirect()) {
            int len = src.remaining();
            enter();
            try {
                java.nio.MappedByteBuffer m = chunk(pos, len);
                if (m != null) {
                    m.put((int) (pos & ((1L << CHUNK_SHIFT) - 1)), src, src.position(), len);
                    src.position(src.position() + len);
                    return;
                }
            } catch (InternalError e) { // SIGBUS: no space, or the page could not be read in
                throw new IOException("write of " + len + " bytes at " + pos + " to " + path + " failed: " + e.getMessage(), e);
            } finally {
                users.decrementAndGet();
            }
        }
        if (fd >= 0 && dsyncFd >= 0 && src.isDirect()) {
            enter();
            try {
                RawIO.pwriteFully(fua ? dsyncFd : fd, src, pos, path);
            } finally {
                users.decrementAndGet();
            }
            return;
        }
        FileChannel c = fua && dsync != null ? dsync : ch;
        while (src.hasRemaining()) {
            pos += c.write(src, pos);
        }
    }

    /**
     * Sends {@code [pos, pos+len)} of this file to {@code target} with FileChannel.transferTo:
     * sendfile(2) when the target is a socket channel (the socket takes the bytes straight from
     * the page cache; no copy through Java). The caller keeps the range from changing until the
     * receiver has the bytes: the socket may still refer to the pages after this returns.
     */
    public void transferTo(long pos, long len, java.nio.channels.WritableByteChannel target) throws IOException {
        if (pos < 0 || pos + len > size) {
            throw new EOFException("read of " + len + " bytes at " + pos + " past the end of " + path + " (" + size + " bytes)");
        }
        while (len > 0) {
            long n = ch.transferTo(pos, len, target);
            if (n <= 0) throw new IOException("sending " + len + " bytes at " + pos + " of " + path + " made no progress");
            pos += n;
            len -= n;
        }
    }

    /**
     * Lets {@code src} write itself into this file (ublk: io_uring WRITE_FIXED from the request's
     * registered buffer, no copy through Java; a FUA write through the O_DSYNC descriptor), or
     * copy itself into this memory file system's file ({@link #takesMappedCopies}), or, where it
     * cannot, writes its {@link WriteSource#buffer} as {@link #write(long, ByteBuffer, boolean)}.
     */
    @Override
    public void write(long pos, WriteSource src, boolean fua) throws IOException {
        int len = src.length();
        if (pos < 0 || pos + len > size) {
            throw new EOFException("write of " + len + " bytes at " + pos + " past the end of " + path + " (" + size + " bytes)");
        }
        int f = fua ? sourceDsyncFd : sourceFd;
        boolean fixed = f >= 0 && !(MMAP_WRITES && chunks != null && !fua);
        if (fixed || memoryFile) {
            enter();
            try {
                if (fixed && src.writeTo(f, pos)) return;
                // a memory file system: a FUA write is durable as soon as it is in the page cache too
                if (copyIntoMapping(pos, src)) return;
            } catch (IOException e) {
                throw new IOException("write of " + len + " bytes at " + pos + " to " + path + " failed: " + e.getMessage(), e);
            } finally {
                users.decrementAndGet();
            }
        }
        write(pos, src.buffer(), fua);
    }

    /**
     * Starts the source's write into this file ({@link WriteSource#start}: ublk's WRITE_FIXED in
     * flight), or returns null, having started nothing. The store stays open until it is awaited.
     */
    @Override
    public WriteSource.Pending startWrite(long pos, WriteSource src, boolean fua) throws IOException {
        int len = src.length();
        if (pos < 0 || pos + len > size) {
            throw new EOFException("write of " + len + " bytes at " + pos + " past the end of " + path + " (" + size + " bytes)");
        }
        int f = fua ? sourceDsyncFd : sourceFd;
        if (f < 0 || (MMAP_WRITES && chunks != null && !fua)) return null;
        enter();
        WriteSource.Pending p;
        try {
            p = src.start(f, pos);
        } catch (IOException e) {
            users.decrementAndGet();
            throw new IOException("write of " + len + " bytes at " + pos + " to " + path + " failed: " + e.getMessage(), e);
        } catch (RuntimeException e) {
            users.decrementAndGet();
            throw e;
        }
        if (p == null) {
            users.decrementAndGet();
            return null;
        }
        return () -> {
            try {
                p.await();
            } catch (IOException e) {
                throw new IOException("write of " + len + " bytes at " + pos + " to " + path + " failed: " + e.getMessage(), e);
            } finally {
                users.decrementAndGet();
            }
        };
    }

    /**
     * A new read-only descriptor of this very file (the same inode even if the path was since
     * unlinked or replaced), owned by the caller: for reads served outside this class (ublk zero
     * copy). Reads through it see every write made here (same page cache).
     */
    public int openReadOnlyDescriptor() throws IOException {
        int own = fd >= 0 ? fd : sourceFd; // opened with the channel: this very file
        String p = own >= 0 ? "/proc/self/fd/" + own : path.toString();
        int f = LibC.get().open(p, LibC.O_RDONLY | LibC.O_CLOEXEC, 0);
        if (f < 0) throw new IOException("cannot open " + path + " for reading: " + LibC.get().strerror(LibC.errno()));
        return f;
    }

    /** Our descriptor for in-kernel copies ({@link #copyFrom}), opened on first use; -1: none yet. */
    private int copyFd = -1;

    private synchronized int copyFd() throws IOException {
        if (fd >= 0) return fd;
        if (copyFd < 0) {
            int f = LibC.get().open(path.toString(), (dsync == null ? LibC.O_RDONLY : LibC.O_RDWR) | LibC.O_CLOEXEC, 0);
            if (f < 0) throw new IOException("cannot open " + path + " for copying: " + LibC.get().strerror(LibC.errno()));
            copyFd = f;
        }
        return copyFd;
    }

    /**
     * Writes {@code len} bytes of {@code src} at {@code srcPos} here at {@code pos}, in the kernel
     * (the shim's copy_file_range; pread/pwrite through {@code buf}, a direct buffer, where the
     * kernel refuses). Like a non-FUA {@link #write}: in the page cache when it returns, durable
     * after {@link #flush}.
     */
    public void copyFrom(FileStore src, long srcPos, long pos, int len, ByteBuffer buf,
                         org.ublkmirror.sys.NativeLoops nl) throws IOException {
        if (dsync == null) throw new IOException(path + " is open read-only");
        if (srcPos < 0 || srcPos + len > src.size) {
            throw new EOFException("copy of " + len + " bytes at " + srcPos + " past the end of " + src.path);
        }
        if (pos < 0 || pos + len > size) {
            throw new EOFException("write of " + len + " bytes at " + pos + " past the end of " + path + " (" + size + " bytes)");
        }
        src.enter();
        try {
            enter();
            try {
                nl.copy(src.copyFd(), srcPos, copyFd(), pos, len, buf, 0, src.path + " -> " + path);
            } finally {
                users.decrementAndGet();
            }
        } finally {
            src.users.decrementAndGet();
        }
    }

    private void enter() throws java.nio.channels.ClosedChannelException {
        while (true) {
            int u = users.get();
            if (u < 0) throw new java.nio.channels.ClosedChannelException();
            if (users.compareAndSet(u, u + 1)) return;
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
            // refuse new calls, wait for those in flight, then close: no write may reach a reused number
            while (true) {
                int u = users.get();
                if (u < 0) return; // closed already
                if (u == 0 && users.compareAndSet(0, Integer.MIN_VALUE)) break;
                Thread.onSpinWait();
            }
            if (fd >= 0) LibC.get().close(fd);
            if (dsyncFd >= 0) LibC.get().close(dsyncFd);
            if (sourceFd >= 0 && sourceFd != fd) LibC.get().close(sourceFd);
            if (sourceDsyncFd >= 0 && sourceDsyncFd != dsyncFd) LibC.get().close(sourceDsyncFd);
            synchronized (this) {
                if (copyFd >= 0) LibC.get().close(copyFd);
                copyFd = -1;
                if (copyMap > 0) LibC.munmap(copyMap, size);
                copyMap = -1;
            }
        }
    }
}
