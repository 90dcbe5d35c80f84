package org.ublkmirror.leg;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicLong;

/**
 * An in-memory store that can fail and crash on purpose: the fault-injecting leg every test
 * suite shares.
 *
 * <ul>
 * <li>{@link #setOffline(boolean)}: every call throws, as a vanished secondary would.</li>
 * <li>{@link #failWritesAfter(long)}: the n-th write from now on, and all after it, fail.</li>
 * <li>{@link #daemonCrash()}: nothing is lost (page cache survives), only the handle dies.</li>
 * <li>{@link #powerLoss(Random)}: the image falls back to the last flush, plus FUA writes, plus
 * a random subset of the other writes since then, each 4 KiB page kept or dropped on its own,
 * applied in their original order (as writeback may have reached the medium).</li>
 * </ul>
 * Counters record bytes written and read, so tests can bound what a resync copied.
 */
public final class FaultyStore implements Store {
    private static final int PAGE = 4096;

    private final String name;
    private final byte[] current;
    private byte[] durable;
    private final List<long[]> unflushed = new ArrayList<>(); // {pos, len, fua, index into payloads}
    private final List<byte[]> payloads = new ArrayList<>();
    private volatile boolean offline;
    private volatile boolean closed;
    private long failAfter = -1;
    private volatile CrashSwitch crashSwitch;
    private final AtomicLong bytesWritten = new AtomicLong();
    private final AtomicLong bytesRead = new AtomicLong();
    private final AtomicLong flushes = new AtomicLong();

    public FaultyStore(String name, long size) {
        if (size > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("FaultyStore holds at most 2 GiB");
        }
        this.name = name;
        this.current = new byte[(int) size];
        this.durable = new byte[(int) size];
    }

    private FaultyStore(String name, byte[] image) {
        this.name = name;
        this.current = image;
        this.durable = image.clone();
    }

    /**
     * A process death at an exact point, shared by the stores of one daemon: after {@code n} more
     * writes (to any store sharing it) every write, flush and discard fails, as if the process had
     * died there. Then take {@link #daemonCrash()} or {@link #powerLoss} images.
     */
    public static final class CrashSwitch {
        private final AtomicLong left;

        public CrashSwitch(long writesBeforeCrash) {
            this.left = new AtomicLong(writesBeforeCrash);
        }

        boolean tripped() {
            return left.get() < 0;
        }

        /** True if this write may still happen. */
        boolean take() {
            return left.getAndDecrement() > 0;
        }

        public boolean crashed() {
            return tripped();
        }
    }

    public void setCrashSwitch(CrashSwitch sw) {
        this.crashSwitch = sw;
    }

    public void setOffline(boolean offline) {
        this.offline = offline;
    }

    public boolean isOffline() {
        return offline;
    }

    /** Writes succeed {@code n} more times, then fail until {@code failWritesAfter(-1)}. */
    public synchronized void failWritesAfter(long n) {
        this.failAfter = n;
    }

    public long bytesWritten() {
        return bytesWritten.get();
    }

    public long bytesRead() {
        return bytesRead.get();
    }

    public long flushes() {
        return flushes.get();
    }

    public void resetCounters() {
        bytesWritten.set(0);
        bytesRead.set(0);
        flushes.set(0);
    }

    private void check() throws IOException {
        if (closed) {
            throw new IOException(name + ": store is closed");
        }
        if (offline) {
            throw new IOException(name + ": offline (injected fault)");
        }
    }

    private void checkRange(long pos, long len) throws EOFException {
        if (pos < 0 || len < 0 || pos + len > current.length) {
            throw new EOFException(name + ": " + len + " bytes at " + pos + " outside " + current.length);
        }
    }

    @Override
    public long size() {
        return current.length;
    }

    @Override
    public synchronized void read(long pos, ByteBuffer dst) throws IOException {
        check();
        int n = dst.remaining();
        checkRange(pos, n);
        dst.put(current, (int) pos, n);
        bytesRead.addAndGet(n);
    }

    @Override
    public synchronized void write(long pos, ByteBuffer src, boolean fua) throws IOException {
        check();
        CrashSwitch sw = crashSwitch;
        if (sw != null && !sw.take()) {
            throw new IOException(name + ": process died (injected crash)");
        }
        if (failAfter == 0) {
            throw new IOException(name + ": write failed (injected fault)");
        }
        if (failAfter > 0) {
            failAfter--;
        }
        int n = src.remaining();
        checkRange(pos, n);
        byte[] data = new byte[n];
        src.get(data);
        System.arraycopy(data, 0, current, (int) pos, n);
        unflushed.add(new long[] {pos, n, fua ? 1 : 0, payloads.size()});
        payloads.add(data);
        bytesWritten.addAndGet(n);
    }

    @Override
    public synchronized void flush() throws IOException {
        check();
        CrashSwitch sw = crashSwitch;
        if (sw != null && sw.tripped()) {
            throw new IOException(name + ": process died (injected crash)");
        }
        for (long[] w : unflushed) {
            byte[] data = payloads.get((int) w[3]);
            System.arraycopy(data, 0, durable, (int) w[0], data.length);
        }
        unflushed.clear();
        payloads.clear();
        flushes.incrementAndGet();
    }

    @Override
    public synchronized void discard(long pos, long len) throws IOException {
        check();
        checkRange(pos, len);
        // a discard is a write of zeroes as far as durability goes
        long done = 0;
        while (done < len) {
            int n = (int) Math.min(len - done, 1 << 20);
            write(pos + done, ByteBuffer.allocate(n), false);
            done += n;
        }
    }

    /** The daemon died: everything written is still there. Returns the store a restarted daemon opens. */
    public synchronized FaultyStore daemonCrash() {
        closed = true;
        return new FaultyStore(name, current.clone());
    }

    /** The machine lost power: see the class comment. Returns the store as the next boot finds it. */
    public synchronized FaultyStore powerLoss(Random rnd) {
        closed = true;
        byte[] img = durable.clone();
        for (long[] w : unflushed) {
            byte[] data = payloads.get((int) w[3]);
            int pos = (int) w[0];
            boolean fua = w[2] == 1;
            for (int off = 0; off < data.length; off += PAGE) {
                int len = Math.min(PAGE, data.length - off);
                if (fua || rnd.nextBoolean()) {
                    System.arraycopy(data, off, img, pos + off, len);
                }
            }
        }
        return new FaultyStore(name, img);
    }

    /** A copy of what reads would return now (for test assertions). */
    public synchronized byte[] image() {
        return current.clone();
    }

    public synchronized boolean sameBytes(long pos, FaultyStore other, long otherPos, int len) {
        return Arrays.equals(current, (int) pos, (int) pos + len, other.current, (int) otherPos, (int) otherPos + len);
    }

    @Override
    public String describe() {
        return "mem:" + name;
    }

    @Override
    public void close() {
        closed = true;
    }

    /** Opens the store again after {@link #close()} (what opening the same file again does). */
    public FaultyStore reopen() {
        closed = false;
        return this;
    }
}
