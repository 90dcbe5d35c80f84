package org.ublkmirror.resync;

import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

/**
 * A token bucket in bytes per second: the operator's {@code --rate}. 0 means unlimited.
 *
 * <p>The bucket holds at most {@code burst} bytes (100 ms worth of the rate, at least 1 byte).
 * A request larger than the bucket waits until the bucket is full, then takes it all and goes
 * into debt, so requests of any size are served and the long-run rate is exact.
 * {@link #setRate} takes effect for waiters too: they sleep in slices of at most
 * {@link #MAX_SLICE_NANOS} and recompute.
 *
 * <p>Time comes from a {@link Clock} so tests can drive it without wall-clock sleeps.
 */
public final class RateLimiter {
    /** The longest single sleep, so rate changes and cancellation are seen promptly. */
    public static final long MAX_SLICE_NANOS = TimeUnit.MILLISECONDS.toNanos(50);
    private static final long BURST_NANOS = TimeUnit.MILLISECONDS.toNanos(100);

    /** Monotonic time and sleeping; {@link #SYSTEM} in production, a fake in tests. */
    public interface Clock {
        long nanoTime();

        void sleepNanos(long nanos) throws InterruptedException;

        Clock SYSTEM = new Clock() {
            @Override
            public long nanoTime() {
                return System.nanoTime();
            }

            @Override
            public void sleepNanos(long nanos) throws InterruptedException {
                TimeUnit.NANOSECONDS.sleep(nanos);
            }
        };
    }

    private final Clock clock;
    private long rate; // bytes per second, 0 = unlimited
    private double tokens;
    private long last;

    public RateLimiter(long bytesPerSecond) {
        this(bytesPerSecond, Clock.SYSTEM);
    }

    public RateLimiter(long bytesPerSecond, Clock clock) {
        checkRate(bytesPerSecond);
        this.clock = clock;
        this.rate = bytesPerSecond;
        this.last = clock.nanoTime();
        this.tokens = burst(bytesPerSecond);
    }

    public static RateLimiter unlimited() {
        return new RateLimiter(0);
    }

    private static void checkRate(long r) {
        if (r < 0) {
            throw new IllegalArgumentException("rate " + r + " B/s is negative; use 0 for unlimited");
        }
    }

    private static double burst(long r) {
        return Math.max(1.0, r * (BURST_NANOS / 1e9));
    }

    public synchronized long rate() {
        return rate;
    }

    /** Changes the rate now; waiting callers pick it up within one sleep slice. */
    public synchronized void setRate(long bytesPerSecond) {
        checkRate(bytesPerSecond);
        refill();
        rate = bytesPerSecond;
        tokens = Math.min(tokens, burst(rate));
        if (rate == 0) {
            tokens = 0;
        }
    }

    private void refill() {
        long now = clock.nanoTime();
        long dt = now - last;
        last = now;
        if (rate > 0 && dt > 0) {
            tokens = Math.min(burst(rate), tokens + dt * (rate / 1e9));
        }
    }

    /** Waits until {@code bytes} may pass. */
    public void acquire(long bytes) throws InterruptedException {
        acquire(bytes, () -> false);
    }

    /**
     * Waits until {@code bytes} may pass, or until {@code abort} says stop (checked between
     * sleep slices). Returns false if aborted, with nothing taken.
     */
    public boolean acquire(long bytes, BooleanSupplier abort) throws InterruptedException {
        if (bytes < 0) {
            throw new IllegalArgumentException("cannot acquire " + bytes + " bytes");
        }
        while (true) {
            if (Thread.interrupted()) {
                throw new InterruptedException();
            }
            if (abort.getAsBoolean()) {
                return false;
            }
            long waitNanos;
            synchronized (this) {
                if (rate == 0) {
                    return true;
                }
                refill();
                double need = Math.min(bytes, burst(rate));
                if (tokens >= need) {
                    tokens -= bytes; // may go negative: debt paid by later callers
                    return true;
                }
                waitNanos = (long) Math.ceil((need - tokens) * 1e9 / rate);
            }
            clock.sleepNanos(Math.max(1, Math.min(waitNanos, MAX_SLICE_NANOS)));
        }
    }
}
