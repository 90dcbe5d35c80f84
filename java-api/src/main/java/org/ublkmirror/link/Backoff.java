package org.ublkmirror.link;

import java.util.Random;

/**
 * Reconnect delays: exponential from {@code minMillis}, doubling per failed attempt, capped at
 * {@code maxMillis}, with "equal jitter" (half the step fixed, half random) so that many primaries
 * that lost one gateway do not come back in lock step, while no delay is ever below half the step
 * or above the cap. Attempt 0 is the first retry after an outage.
 */
public final class Backoff {
    private final long minMillis;
    private final long maxMillis;
    private final Random random;

    public Backoff(long minMillis, long maxMillis, Random random) {
        if (minMillis <= 0 || maxMillis < minMillis) {
            throw new IllegalArgumentException("retry interval " + minMillis + ".." + maxMillis + " ms: need 0 < min <= max");
        }
        this.minMillis = minMillis;
        this.maxMillis = maxMillis;
        this.random = random;
    }

    /** The step for an attempt, before jitter: min * 2^attempt, at most max. */
    public long step(int attempt) {
        long s = minMillis;
        for (int i = 0; i < attempt && s < maxMillis; i++) s *= 2;
        return Math.min(s, maxMillis);
    }

    /** The delay before retry number {@code attempt}: in [step/2, step], never above max. */
    public long delay(int attempt) {
        long s = step(attempt);
        long half = s / 2;
        long r;
        synchronized (random) {
            r = half == 0 ? 0 : (long) (random.nextDouble() * (s - half + 1));
        }
        return Math.min(maxMillis, half + r);
    }

    public long minMillis() {
        return minMillis;
    }

    public long maxMillis() {
        return maxMillis;
    }
}
