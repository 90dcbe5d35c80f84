package org.ublkmirror.sys;

import com.kenai.jffi.MemoryIO;

import java.io.Closeable;
import java.io.IOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A minimal io_uring (include/uapi/linux/io_uring.h) for one thread: set up with 128-byte SQEs
 * (IORING_OP_URING_CMD carries an 80-byte command), rings mapped shared, submission and
 * completion through {@code io_uring_enter}. Only what the FUSE frontend needs: no SQPOLL, no
 * registered files or buffers. Not thread-safe: the thread that creates the ring is its only user
 * (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN: completions are posted when that
 * thread waits in {@link #submitAndWait}, not by interrupting it).
 */
public final class IoUring implements Closeable {
    public static final int SETUP_SQE128 = 1 << 10, SETUP_SINGLE_ISSUER = 1 << 12, SETUP_DEFER_TASKRUN = 1 << 13,
            SETUP_COOP_TASKRUN = 1 << 8;
    public static final int OP_NOP = 0, OP_URING_CMD = 46;
    public static final int SQE_SIZE = 128, CQE_SIZE = 16;
    /** SQE field offsets. For URING_CMD, cmd_op sits where off is, and the command at 48. */
    public static final int SQE_OPCODE = 0, SQE_FLAGS = 1, SQE_FD = 4, SQE_CMD_OP = 8, SQE_OFF = 8, SQE_ADDR = 16,
            SQE_LEN = 24, SQE_OP_FLAGS = 28, SQE_USER_DATA = 32, SQE_CMD = 48;

    /** The io_uring calls have one number everywhere (mmap and munmap: {@link LibC#SYS_MMAP}). */
    private static final long SYS_MMAP = LibC.SYS_MMAP, SYS_MUNMAP = LibC.SYS_MUNMAP,
            SYS_IO_URING_SETUP = 425, SYS_IO_URING_ENTER = 426;
    private static final int ENTER_GETEVENTS = 1;
    private static final int FEAT_SINGLE_MMAP = 1;
    private static final long OFF_SQ_RING = 0, OFF_CQ_RING = 0x8000000L, OFF_SQES = 0x10000000L;
    private static final int PROT_RW = 3, MAP_SHARED_POPULATE = 0x01 | 0x8000;
    private static final VarHandle INT = MethodHandles.byteBufferViewVarHandle(int[].class, ByteOrder.nativeOrder());

    private final LibC c = LibC.get();
    private final int fd;
    private final long sqAddr, sqLen, cqAddr, cqLen, sqesAddr, sqesLen;
    private final ByteBuffer sq, cq, sqes;
    private final int sqHead, sqTail, sqMask, sqArray, sqEntries;
    private final int cqHead, cqTail, cqMask, cqCqes;
    private int localTail;
    private int pending; // SQEs written but not yet passed to io_uring_enter
    private boolean closed;

    private IoUring(int fd, ByteBuffer p) throws IOException {
        this.fd = fd;
        int sqEnt = p.getInt(0), cqEnt = p.getInt(4), features = p.getInt(20);
        int sqOff = 40, cqOff = 80;
        this.sqEntries = sqEnt;
        long sqSize = p.getInt(sqOff + 24) + 4L * sqEnt;       // sq_off.array + entries * u32
        long cqSize = p.getInt(cqOff + 20) + (long) CQE_SIZE * cqEnt; // cq_off.cqes + entries * cqe
        boolean single = (features & FEAT_SINGLE_MMAP) != 0;
        if (single) {
            sqSize = cqSize = Math.max(sqSize, cqSize);
        }
        long sa = map(sqSize, OFF_SQ_RING);
        long ca = single ? sa : map(cqSize, OFF_CQ_RING);
        long qa = map((long) SQE_SIZE * sqEnt, OFF_SQES);
        this.sqAddr = sa;
        this.sqLen = sqSize;
        this.cqAddr = single ? 0 : ca;
        this.cqLen = cqSize;
        this.sqesAddr = qa;
        this.sqesLen = (long) SQE_SIZE * sqEnt;
        MemoryIO io = MemoryIO.getInstance();
        this.sq = io.newDirectByteBuffer(sa, (int) sqSize).order(ByteOrder.nativeOrder());
        this.cq = single ? sq : io.newDirectByteBuffer(ca, (int) cqSize).order(ByteOrder.nativeOrder());
        this.sqes = io.newDirectByteBuffer(qa, (int) sqesLen).order(ByteOrder.nativeOrder());
        this.sqHead = p.getInt(sqOff);
        this.sqTail = p.getInt(sqOff + 4);
        this.sqMask = sq.getInt(p.getInt(sqOff + 8));
        this.sqArray = p.getInt(sqOff + 24);
        this.cqHead = p.getInt(cqOff);
        this.cqTail = p.getInt(cqOff + 4);
        this.cqMask = cq.getInt(p.getInt(cqOff + 8));
        this.cqCqes = p.getInt(cqOff + 20);
        this.localTail = (int) INT.getAcquire(sq, sqTail);
    }

    private long map(long len, long off) throws IOException {
        long a = c.syscall(SYS_MMAP, 0, len, PROT_RW, MAP_SHARED_POPULATE, fd, off);
        if (a == -1 || a == 0) {
            int e = LibC.errno();
            throw new IOException("mmap of the io_uring rings failed: " + c.strerror(e));
        }
        return a;
    }

    /**
     * Sets up a ring of {@code entries} SQEs (a power of two) and twice as many CQEs, with
     * {@code flags} (SETUP_*); {@link #SETUP_SQE128} is always added.
     */
    public static IoUring create(int entries, int flags) throws IOException {
        LibC c = LibC.get();
        ByteBuffer p = ByteBuffer.allocateDirect(120).order(ByteOrder.nativeOrder());
        p.putInt(8, flags | SETUP_SQE128);
        long addr = MemoryIO.getInstance().getDirectBufferAddress(p);
        long fd = c.syscall(SYS_IO_URING_SETUP, entries, addr, 0, 0, 0, 0);
        if (fd < 0) {
            int e = LibC.errno();
            throw new IOException("io_uring_setup failed: " + c.strerror(e) + " (errno " + e + ")");
        }
        try {
            return new IoUring((int) fd, p);
        } catch (IOException | RuntimeException e) {
            c.close((int) fd);
            throw e;
        }
    }

    public int fd() {
        return fd;
    }

    /**
     * The next free SQE, zeroed, as a 128-byte slice; fill it and it is submitted by the next
     * {@link #submitAndWait}. Null if the submission queue is full (submit first).
     */
    public ByteBuffer nextSqe() {
        int head = (int) INT.getAcquire(sq, sqHead);
        if (localTail - head >= sqEntries) {
            return null;
        }
        int idx = localTail & sqMask;
        ByteBuffer s = sqes.slice(idx * SQE_SIZE, SQE_SIZE).order(ByteOrder.nativeOrder());
        for (int i = 0; i < SQE_SIZE; i += 8) {
            s.putLong(i, 0);
        }
        sq.putInt(sqArray + 4 * idx, idx);
        localTail++;
        pending++;
        return s;
    }

    /**
     * Passes every SQE filled since the last call to the kernel and waits until at least
     * {@code minComplete} completions are ready. Returns the number of SQEs the kernel took, or a
     * negative errno (EINTR: call again).
     */
    public int submitAndWait(int minComplete) {
        INT.setRelease(sq, sqTail, localTail);
        int toSubmit = pending;
        long r = c.syscall(SYS_IO_URING_ENTER, fd, toSubmit, minComplete, minComplete > 0 ? ENTER_GETEVENTS : 0, 0, 0);
        if (r < 0) {
            return -LibC.errno();
        }
        pending -= (int) r;
        return (int) r;
    }

    /** Completions ready now. */
    public int ready() {
        return (int) INT.getAcquire(cq, cqTail) - (int) INT.getAcquire(cq, cqHead);
    }

    /** user_data of the i-th ready completion (0 = the oldest). */
    public long cqeUserData(int i) {
        int head = (int) INT.getAcquire(cq, cqHead);
        return cq.getLong(cqCqes + ((head + i) & cqMask) * CQE_SIZE);
    }

    /** res of the i-th ready completion. */
    public int cqeResult(int i) {
        int head = (int) INT.getAcquire(cq, cqHead);
        return cq.getInt(cqCqes + ((head + i) & cqMask) * CQE_SIZE + 8);
    }

    /** Marks {@code n} completions consumed. */
    public void consume(int n) {
        int head = (int) INT.getAcquire(cq, cqHead);
        INT.setRelease(cq, cqHead, head + n);
    }

    /** The address of a direct buffer's first byte (for SQE addr fields). */
    public static long address(ByteBuffer direct) {
        return MemoryIO.getInstance().getDirectBufferAddress(direct) + direct.position();
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        c.syscall(SYS_MUNMAP, sqesAddr, sqesLen, 0, 0, 0, 0);
        if (cqAddr != 0) c.syscall(SYS_MUNMAP, cqAddr, cqLen, 0, 0, 0, 0);
        c.syscall(SYS_MUNMAP, sqAddr, sqLen, 0, 0, 0, 0);
        c.close(fd);
    }
}
