package org.ublkmirror.sys;

import com.kenai.jffi.MemoryIO;

import java.io.Closeable;
import java.io.FileDescriptor;
import java.io.IOException;
import java.lang.reflect.Field;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * splice(2) from a socket into a file through a pipe of our own: the bytes go from the socket's
 * receive queue into the file's page cache with one copy, none through a Java buffer (a read into
 * a buffer and a write from it make two). The gateway uses it for large WRITE payloads.
 *
 * <p>One instance per thread (its pipe and offset cell are not shared). The pipe is empty between
 * calls: every byte moved into it is moved out again (into the file, or, after a file-side error,
 * discarded) before a call returns.
 */
public final class Splice implements Closeable {
    private static final boolean ARM64 = "aarch64".equals(System.getProperty("os.arch"));
    private static final long SYS_SPLICE = ARM64 ? 76 : 275, SYS_PIPE2 = ARM64 ? 59 : 293,
            SYS_FCNTL = ARM64 ? 25 : 72, SYS_PPOLL = ARM64 ? 73 : 271;
    private static final int F_SETPIPE_SZ = 1031, F_GETPIPE_SZ = 1032, F_DUPFD_CLOEXEC = 1030;
    private static final int SPLICE_F_MOVE = 1, SPLICE_F_MORE = 4;
    private static final short POLLIN = 1;
    /** splice into our pipe: 1 MiB (the largest a pipe may be without CAP_SYS_RESOURCE, by default). */
    private static final int PIPE_BYTES = 1 << 20;

    private final LibC c = LibC.get();
    private final int pipeR, pipeW;
    private final int pipeBytes;
    /** Scratch: the file offset (8 bytes), then two ints for the pipe's descriptors or a pollfd. */
    private final ByteBuffer cell = ByteBuffer.allocateDirect(16).order(ByteOrder.nativeOrder());
    private final long cellAddr = MemoryIO.getInstance().getDirectBufferAddress(cell);
    private final ByteBuffer discard = ByteBuffer.allocateDirect(64 << 10);
    private boolean closed;
    /** False once the file refused splice (EINVAL: its filesystem has no splice_write); then read + pwrite. */
    private boolean fileSplice = true;
    private static final int EOPNOTSUPP = 95;

    /** Thrown when the file refused bytes; the socket side is intact (the payload's rest can still be read). */
    public static final class FileSideException extends IOException {
        public FileSideException(String message) {
            super(message);
        }
    }

    private Splice() throws IOException {
        if (!supported()) throw new IOException("splice: not on this architecture");
        long r = c.syscall(SYS_PIPE2, cellAddr + 8, LibC.O_CLOEXEC, 0, 0, 0, 0);
        if (r < 0) throw new IOException("pipe2 failed: " + c.strerror(LibC.errno()));
        pipeR = cell.getInt(8);
        pipeW = cell.getInt(12);
        c.syscall(SYS_FCNTL, pipeW, F_SETPIPE_SZ, PIPE_BYTES, 0, 0, 0); // may be refused: keep the default
        long sz = c.syscall(SYS_FCNTL, pipeW, F_GETPIPE_SZ, 0, 0, 0, 0);
        pipeBytes = sz > 0 ? (int) sz : 64 << 10;
    }

    /** A splicer, or null where splice cannot be used (another architecture, no libc binding). */
    public static Splice open() {
        try {
            return new Splice();
        } catch (IOException | LinkageError | RuntimeException e) {
            return null;
        }
    }

    static boolean supported() {
        String arch = System.getProperty("os.arch");
        return "amd64".equals(arch) || "x86_64".equals(arch) || ARM64;
    }

    /** The pipe's capacity in bytes (tests). */
    public int pipeBytes() {
        return pipeBytes;
    }

    /**
     * Moves exactly {@code len} bytes from socket {@code sock} into file {@code file} at byte
     * {@code pos}. A socket-side failure (the peer closed, a reset) is an IOException and the
     * connection is lost. A file-side failure (no space, an I/O error, a descriptor not open for
     * writing) consumes the rest of the {@code len} bytes from the socket, discarding them, then
     * throws {@link FileSideException}: the connection stays in step and can answer with an error.
     * Bytes before the failure may have reached the file (as with a failed pwrite).
     */
    public void socketToFile(int sock, int file, long pos, long len) throws IOException {
        check();
        String fileError = null;
        while (len > 0) {
            long n = c.syscall(SYS_SPLICE, sock, 0, pipeW, 0, Math.min(len, pipeBytes), SPLICE_F_MOVE | SPLICE_F_MORE);
            if (n < 0) {
                int e = LibC.errno();
                if (e == LibC.EINTR) continue;
                if (e == LibC.EAGAIN) { // the socket's descriptor is non-blocking: wait for bytes
                    waitReadable(sock);
                    continue;
                }
                throw new IOException("splice from the socket failed: " + c.strerror(e));
            }
            if (n == 0) {
                throw new java.io.EOFException("the peer closed the connection");
            }
            len -= n;
            if (fileError != null) {
                discardFromPipe(n);
                continue;
            }
            long left = n;
            while (left > 0) {
                if (!fileSplice) { // the file refuses splice: read the pipe and pwrite
                    try {
                        pipeToFile(left, file, pos);
                        pos += left;
                    } catch (FileSideException e) {
                        fileError = e.getMessage();
                    }
                    left = 0;
                    break;
                }
                cell.putLong(0, pos);
                long m = c.syscall(SYS_SPLICE, pipeR, 0, file, cellAddr, left, SPLICE_F_MOVE);
                if (m < 0) {
                    int e = LibC.errno();
                    if (e == LibC.EINTR) continue;
                    if (e == LibC.EINVAL || e == LibC.ENOSYS || e == EOPNOTSUPP) {
                        fileSplice = false; // a filesystem without splice_write: the same bytes by pwrite
                        continue;
                    }
                    fileError = c.strerror(e);
                    discardFromPipe(left);
                    break;
                }
                if (m == 0) {
                    fileError = "the file took no bytes";
                    discardFromPipe(left);
                    break;
                }
                left -= m;
                pos += m;
            }
        }
        if (fileError != null) throw new FileSideException(fileError);
    }

    /**
     * Writes {@code src}'s remaining bytes to {@code file} at {@code pos} (pwrite); a failure is a
     * {@link FileSideException}.
     */
    public void bufferToFile(ByteBuffer src, int file, long pos) throws IOException {
        check();
        int e = PositionalIO.pwriteAll(file, src, pos);
        if (e != 0) throw new FileSideException(e == PositionalIO.NO_PROGRESS ? "the file took no bytes" : c.strerror(e));
    }

    /** A descriptor of our own for the same open file (F_DUPFD_CLOEXEC), or -1. */
    public static int dup(int fd) {
        try {
            long r = LibC.get().syscall(SYS_FCNTL, fd, F_DUPFD_CLOEXEC, 0, 0, 0, 0);
            return r < 0 ? -1 : (int) r;
        } catch (LinkageError | RuntimeException e) {
            return -1;
        }
    }

    /** Moves {@code count} bytes the pipe holds into the file at {@code pos} by read + pwrite; a failure consumes them all. */
    private void pipeToFile(long count, int file, long pos) throws IOException {
        String error = null;
        while (count > 0) {
            discard.clear().limit((int) Math.min(count, discard.capacity()));
            long n = c.read(pipeR, discard, discard.remaining());
            if (n < 0 && LibC.errno() == LibC.EINTR) continue;
            if (n <= 0) throw new IOException("read of the splice pipe failed: " + c.strerror(LibC.errno()));
            count -= n;
            if (error != null) continue;
            discard.position(0).limit((int) n);
            try {
                bufferToFile(discard, file, pos);
                pos += n;
            } catch (FileSideException e) {
                error = e.getMessage();
            }
        }
        if (error != null) throw new FileSideException(error);
    }

    /** Reads and discards {@code count} bytes the pipe holds. */
    private void discardFromPipe(long count) throws IOException {
        while (count > 0) {
            discard.clear();
            long n = c.read(pipeR, discard, Math.min(count, discard.capacity()));
            if (n < 0 && LibC.errno() == LibC.EINTR) continue;
            if (n <= 0) throw new IOException("read of the splice pipe failed: " + c.strerror(LibC.errno()));
            count -= n;
        }
    }

    private void waitReadable(int fd) throws IOException {
        while (true) {
            cell.putInt(8, fd).putShort(12, POLLIN).putShort(14, (short) 0);
            long r = c.syscall(SYS_PPOLL, cellAddr + 8, 1, 0, 0, 8, 0); // no timeout: the connection's own watchdog ends it
            if (r >= 0) return;
            if (LibC.errno() != LibC.EINTR) throw new IOException("poll of the socket failed: " + c.strerror(LibC.errno()));
        }
    }

    private void check() throws IOException {
        if (closed) throw new IOException("splice: closed");
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        c.close(pipeR);
        c.close(pipeW);
    }

    /**
     * The descriptor of a socket channel, or -1 if it cannot be had. The JDK keeps it private; it
     * is read through sun.misc.Unsafe (module jdk.unsupported, no --add-opens needed) and checked
     * to be a socket in /proc/self/fd.
     */
    public static int descriptorOf(SocketChannel ch) {
        try {
            Field uf = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
            uf.setAccessible(true);
            sun.misc.Unsafe u = (sun.misc.Unsafe) uf.get(null);
            Field fdField = null;
            for (Class<?> k = ch.getClass(); k != null && fdField == null; k = k.getSuperclass()) {
                try {
                    Field f = k.getDeclaredField("fd");
                    if (f.getType() == FileDescriptor.class) fdField = f;
                } catch (NoSuchFieldException e) {
                    // look in the superclass
                }
            }
            if (fdField == null) return -1;
            @SuppressWarnings("deprecation")
            long off = u.objectFieldOffset(fdField);
            FileDescriptor fdo = (FileDescriptor) u.getObject(ch, off);
            if (fdo == null) return -1;
            @SuppressWarnings("deprecation")
            long fdOff = u.objectFieldOffset(FileDescriptor.class.getDeclaredField("fd"));
            int fd = u.getInt(fdo, fdOff);
            if (fd < 0) return -1;
            String link = Files.readSymbolicLink(Path.of("/proc/self/fd/" + fd)).toString();
            return link.startsWith("socket:") ? fd : -1;
        } catch (ReflectiveOperationException | IOException | RuntimeException | LinkageError e) {
            return -1;
        }
    }
}
