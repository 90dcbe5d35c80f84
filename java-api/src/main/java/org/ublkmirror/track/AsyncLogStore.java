package org.ublkmirror.track;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.function.LongSupplier;

/**
 * Ships records to a slow or unreliable {@link LogStore} (a log receiver on the network) without
 * making the caller wait: {@link #write} only hands the record to a background thread and
 * returns at once; the thread writes the newest record handed over, and on failure tries again
 * after a backoff (doubling from {@code minBackoffMillis} to {@code maxBackoffMillis}), always
 * with the newest record (an intermediate one is skipped: each record is the whole log).
 * {@link #status()} says what was shipped last, when, and the current error.
 *
 * <p>So a {@link Tracker} persists (on FLUSH, every second while degraded) at the speed of the
 * local copy whatever the receiver does; the shipped copy lags by the time one ship takes, or by
 * the outage of the receiver. {@link #close} gives the thread a bounded time to ship what is
 * queued.
 */
public final class AsyncLogStore implements LogStore, Closeable {
    /** What was shipped: sequences are the records' own (-1: none). */
    public record Status(String target, long queuedSeq, long shippedSeq, long shippedMillis, String error,
                         long failingSinceMillis, long failures) {
        public boolean behind() {
            return queuedSeq > shippedSeq;
        }
    }

    private final LogStore delegate;
    private final long minBackoff, maxBackoff;
    private final LongSupplier clock;
    private final Thread thread;

    // guarded by this
    private byte[] pending;
    private long queuedSeq = -1, shippedSeq = -1, shippedMillis, failingSince, failures;
    private String error;
    private boolean closed, stopNow;

    public AsyncLogStore(LogStore delegate, long minBackoffMillis, long maxBackoffMillis) {
        this(delegate, minBackoffMillis, maxBackoffMillis, System::currentTimeMillis);
    }

    public AsyncLogStore(LogStore delegate, long minBackoffMillis, long maxBackoffMillis, LongSupplier clock) {
        if (minBackoffMillis <= 0 || maxBackoffMillis < minBackoffMillis) {
            throw new IllegalArgumentException("backoff must be 0 < min <= max, got " + minBackoffMillis + ", " + maxBackoffMillis);
        }
        this.delegate = delegate;
        this.minBackoff = minBackoffMillis;
        this.maxBackoff = maxBackoffMillis;
        this.clock = clock;
        this.thread = new Thread(this::run, "log-shipper " + delegate.describe());
        this.thread.setDaemon(true);
        this.thread.start();
    }

    public LogStore delegate() {
        return delegate;
    }

    static long seqOf(byte[] record) {
        return record.length >= TrackingLogFormat.HEADER_LENGTH ? ByteBuffer.wrap(record).getLong(TrackingLogFormat.OFF_SEQUENCE) : -1;
    }

    /** Queues the record for shipping; never blocks on the target and never fails (see {@link #status()}). */
    @Override
    public synchronized void write(byte[] record) throws IOException {
        if (closed) throw new IOException("log shipper to " + delegate.describe() + " is closed");
        pending = record;
        queuedSeq = seqOf(record);
        notifyAll();
    }

    /** Reads from the target itself (blocking: used when a mirror opens and its local copy is unusable). */
    @Override
    public byte[] readLatest() throws IOException {
        return delegate.readLatest();
    }

    @Override
    public String describe() {
        return delegate.describe();
    }

    public synchronized Status status() {
        return new Status(delegate.describe(), queuedSeq, shippedSeq, shippedMillis, error, failingSince, failures);
    }

    /** Waits until the record with sequence {@code seq} (or a newer one) is shipped; false on timeout. */
    public synchronized boolean awaitShipped(long seq, long timeoutMillis) throws InterruptedException {
        long end = System.nanoTime() + timeoutMillis * 1_000_000;
        while (shippedSeq < seq) {
            long left = (end - System.nanoTime()) / 1_000_000;
            if (left <= 0) return false;
            wait(left);
        }
        return true;
    }

    private void run() {
        long backoff = minBackoff;
        while (true) {
            byte[] rec;
            synchronized (this) {
                while (pending == null && !closed) {
                    try {
                        wait();
                    } catch (InterruptedException e) {
                        return;
                    }
                }
                if (pending == null || stopNow) return;
                rec = pending;
                pending = null;
            }
            try {
                delegate.write(rec);
                synchronized (this) {
                    long s = seqOf(rec);
                    if (s > shippedSeq) shippedSeq = s;
                    shippedMillis = clock.getAsLong();
                    error = null;
                    failingSince = 0;
                    notifyAll();
                }
                backoff = minBackoff;
            } catch (IOException | RuntimeException e) {
                synchronized (this) {
                    error = "shipping tracking log seq " + seqOf(rec) + " to " + delegate.describe() + " failed: " + e.getMessage();
                    if (failingSince == 0) failingSince = clock.getAsLong();
                    failures++;
                    if (pending == null) pending = rec; // a newer record, if one came, replaces it
                    if (closed) return; // close() gave up waiting or the shipping cannot succeed now
                    try {
                        wait(backoff);
                    } catch (InterruptedException ie) {
                        return;
                    }
                    if (stopNow) return;
                }
                backoff = Math.min(maxBackoff, backoff * 2);
            }
        }
    }

    /** Stops the shipper after giving it up to {@code flushMillis} to ship what is queued. */
    public void close(long flushMillis) {
        synchronized (this) {
            if (closed) return;
            closed = true;
            notifyAll();
        }
        try {
            thread.join(Math.max(1, flushMillis));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        synchronized (this) {
            stopNow = true;
            notifyAll();
        }
        thread.interrupt();
        if (delegate instanceof Closeable c) {
            try {
                c.close();
            } catch (IOException ignored) {
            }
        }
    }

    /** {@link #close(long)} with 5 s to ship what is queued. */
    @Override
    public void close() {
        close(5000);
    }
}
