package org.ublkmirror.resync;

import java.util.concurrent.TimeUnit;

/**
 * How many resync copies may be in flight now: a delay-based controller in the manner of LEDBAT
 * (RFC 6817), driven by the latency of the copies themselves.
 *
 * <h2>Why</h2>
 * Resync copies and application writes share the secondary's queue (for a remote secondary: one
 * NBD connection, its socket buffers and the link). A fixed window of 16 copies of 1 MiB fills a
 * fast link, and on a slow one puts 16 MiB in front of every application write: on 200 Mbit/s an
 * application write's p99 went from 1.9 ms to 1.5 s (bench/RESULTS.md). A window of 2 carried
 * that link just as fully. The window that fills the link without queueing behind it is
 * about one bandwidth-delay product of copies, which the link decides; so the window follows the
 * link instead of being set once.
 *
 * <h2>How</h2>
 * The <em>base</em> latency of a copy is the least seen for copies of its size class (powers of
 * two) or any larger one over the last one to two {@link #BASE_PERIOD_NANOS periods}: the time a
 * copy takes with nothing queued before it (a shorter copy never takes longer unloaded). The <em>queueing delay</em> of a copy is its latency minus that
 * base, filtered as the least of the last {@link #FILTER} samples (one slow copy, a GC pause,
 * does not move the window). The target is a queueing delay of at most one base latency (at
 * least {@link #MIN_ALLOWANCE_NANOS}): relative to the link's own latency, not a fixed number of
 * milliseconds, so a distant link (50 ms round trip) keeps the window it needs and a slow one
 * (42 ms per MiB at 200 Mbit/s) keeps about one copy queued. One queued copy is enough to keep
 * the bottleneck busy; more only delays the application.
 * <ul>
 *   <li>Start at one copy; one more per completed copy (doubling per round trip, as TCP's slow
 *   start) until the first copy whose own queueing delay is above half the target, which halves
 *   the window (a queue shows one latency late: the window has grown meanwhile).</li>
 *   <li>Then per completed copy: {@code window += (target - delay) / target / window}, the
 *   off-target fraction clamped to [-1, 1] (LEDBAT's linear controller: at most one copy more or
 *   less per window of completions);</li>
 *   <li>and, when the delay is above twice the target (the link slowed down, or the window
 *   started far too deep), halve the window, at most once per copy latency.</li>
 * </ul>
 * The window stays in [1, max]; {@code max} is the configured {@code resync-window}.
 * A fixed controller ({@link #fixed}) always answers {@code max} (the old behaviour, for A/B
 * runs and where an operator wants it).
 *
 * <h2>How large a copy</h2>
 * The window bounds how many copies are ahead of an application write, not how long each takes:
 * on 200 Mbit/s one 1 MiB copy holds the link for 42 ms, and a write behind two of them waited
 * 219 ms at p99 (bench/RESULTS.md). So the adaptive mode also cuts the copies ({@link #copyBytes}):
 * to the largest power of two the link carries in about {@link #COPY_NANOS} (8 ms) at the rate
 * the copies completed over the last {@link #RATE_PERIOD_NANOS}, between
 * {@link #MIN_COPY_BYTES} and the configured largest copy; only while the window is held below
 * its ceiling (then the link is full and that rate is the link's; at the ceiling the window, not
 * the link, sets the rate, and the cut grows back: see {@link #recut}). A fast link keeps 1 MiB copies (3 GB/s
 * x 8 ms is far above); a slow one gets short copies, and the window (which follows the queueing
 * delay, not the copy count) grows to keep the link as full. A resync slowed by the application's
 * own writes on a full link gets shorter copies too: the rate is what the copies got.
 * While the copies are cut, the queueing delay allowed is at least {@link #CUT_ALLOWANCE_NANOS}
 * (10 ms) instead of {@link #MIN_ALLOWANCE_NANOS}. The fixed mode always copies the largest.
 *
 * <p>Thread-safe: copies complete on the resync window's threads.
 */
public final class WindowControl {

    /** Base latency minima are kept per period; the base is the least over this and the previous one. */
    static final long BASE_PERIOD_NANOS = TimeUnit.SECONDS.toNanos(30);
    /**
     * The least allowed queueing delay ({@code -Dublkmirror.resync.minQueueDelayMs}, default 20). Where
     * the copies' latency is short and noisy (a fast link, a CPU-bound machine: 1.3 ms at best,
     * several ms typically, on an unlimited veth) a target of one base latency reads scheduling
     * noise as a queue and holds the window at 2 copies, a third of the throughput of 16 (bench);
     * an application write queued behind 20 ms of copies is a price DRBD's and LEDBAT's fixed
     * targets (LEDBAT: 100 ms) also accept.
     */
    static final long MIN_ALLOWANCE_NANOS = TimeUnit.MILLISECONDS.toNanos(Long.getLong("ublkmirror.resync.minQueueDelayMs", 20));
    /**
     * How long a copy should hold the link ({@code -Dublkmirror.resync.copyMillis}, default 8; 0:
     * always the largest copy). An application write can wait this long behind a copy in
     * service, on top of the queueing delay the window allows.
     */
    static final long COPY_NANOS = TimeUnit.MILLISECONDS.toNanos(Long.getLong("ublkmirror.resync.copyMillis", 8));
    /**
     * The least queueing delay allowed while the copies are cut shorter than the largest
     * ({@code -Dublkmirror.resync.cutQueueDelayMs}, default 10). The 20 ms floor of
     * {@link #MIN_ALLOWANCE_NANOS} is for fast links, where a copy's latency is mostly scheduling
     * noise; a link slow enough to get short copies is not such a link, and there every 10 ms of
     * allowance is 10 ms an application write waits (200 Mbit/s: p99 63-78 ms with 20, 46-47 with
     * 10, the resync at 0.97-0.99 of the link either way; bench/RESULTS.md).
     */
    static final long CUT_ALLOWANCE_NANOS = TimeUnit.MILLISECONDS.toNanos(Long.getLong("ublkmirror.resync.cutQueueDelayMs", 10));
    /** The shortest copy the cut goes down to (unless the largest is shorter). */
    public static final long MIN_COPY_BYTES = 64 << 10;
    /** The copies' rate is measured over periods at least this long (a longer gap without a completed copy starts a new one). */
    static final long RATE_PERIOD_NANOS = TimeUnit.MILLISECONDS.toNanos(250);
    /** The queueing delay is the least of this many recent samples. */
    static final int FILTER = 4;
    private static final int BUCKETS = 40; // size classes 2^0 .. 2^39 bytes

    /** The largest window taken ({@code --resync-window} 1..64). */
    public static final int MAX_WINDOW = 64;

    // guarded by this; reconfigure changes them while copies run
    private int max;
    private boolean adaptive;

    // guarded by this
    private double window;
    private boolean slowStart = true;
    private final long[] baseNow = new long[BUCKETS], basePrev = new long[BUCKETS];
    private long periodStart = Long.MIN_VALUE;
    private final long[] recent = new long[FILTER];
    private int recentCount, recentNext;
    private long lastHalving = Long.MIN_VALUE;
    // the copies' rate: bytes completed since rateStart; 0 bytes per ns until the first period ends
    private long rateStart = Long.MIN_VALUE, rateBytes, lastCompletion = Long.MIN_VALUE;
    private double bytesPerNano;
    /** The filtered queueing delay of the last sample (ns): the copies queue on the link when it is well above 0. */
    private long lastDelay;
    /** What copies are cut to ({@link #recut}); 0: not cut. */
    private long cutBytes;
    private long smallestCut = Long.MAX_VALUE, largestCut, lastCut, lastMax;
    // statistics: the limit at each copy started, and the latencies seen
    private long limitSum, limitSamples, latencySum, latencySamples, skipped;
    private int lowest = Integer.MAX_VALUE, highest;

    private final long copyNanos;
    /** The least queueing delay allowed while copies are cut (see {@link #CUT_ALLOWANCE_NANOS}). */
    private final long cutAllowance;

    private WindowControl(int max, boolean adaptive, long copyNanos) {
        checkMax(max);
        this.copyNanos = copyNanos;
        this.cutAllowance = CUT_ALLOWANCE_NANOS;
        this.max = max;
        this.adaptive = adaptive;
        this.window = adaptive ? 1 : max;
        java.util.Arrays.fill(baseNow, Long.MAX_VALUE);
        java.util.Arrays.fill(basePrev, Long.MAX_VALUE);
    }

    /** A window that follows the copies' latency, between 1 and {@code max}. */
    public static WindowControl adaptive(int max) {
        return new WindowControl(max, true, COPY_NANOS);
    }

    /** As {@link #adaptive(int)}, copies cut to about {@code copyNanos} on the link (0: never cut; tests). */
    static WindowControl adaptive(int max, long copyNanos) {
        return new WindowControl(max, true, copyNanos);
    }

    /** Always {@code max} copies in flight. */
    public static WindowControl fixed(int max) {
        return new WindowControl(max, false, 0);
    }

    /** The range every resync window takes (1..{@value #MAX_WINDOW}); throws IllegalArgumentException outside it. */
    public static void checkMax(int max) {
        if (max < 1 || max > MAX_WINDOW) {
            throw new IllegalArgumentException("resync window " + max + " is out of range; use 1.." + MAX_WINDOW);
        }
    }

    /** The mode's name, as {@code --resync-window-mode} takes it and status and reports show it. */
    public static String modeName(boolean adaptive) {
        return adaptive ? "adaptive" : "fixed";
    }

    public synchronized boolean isAdaptive() {
        return adaptive;
    }

    public synchronized int max() {
        return max;
    }

    /**
     * A new ceiling and mode for the copies still to start (an operator's {@code mirrorctl config}
     * during a resync): fixed means {@code max} from now on; adaptive keeps what it learned of
     * the link, the window no higher than the new ceiling (switched from fixed, it starts from
     * there and comes down as the copies' latency says, without a new slow start).
     */
    public synchronized void reconfigure(int max, boolean adaptive) {
        checkMax(max);
        if (adaptive && !this.adaptive) slowStart = false;
        this.max = max;
        this.adaptive = adaptive;
        window = adaptive ? Math.max(1, Math.min(window, max)) : max;
    }

    /** How many copies may be in flight now (1..max). */
    public synchronized int limit() {
        return (int) Math.max(1, Math.min(max, Math.floor(window)));
    }

    /**
     * How many bytes the next copy should have, at most {@code maxBytes} (the configured largest
     * copy): see "How large a copy" above. {@code maxBytes} until the copies' rate is known, and
     * always in the fixed mode.
     */
    public synchronized long copyBytes(long maxBytes) {
        long cut = maxBytes;
        if (adaptive && cutBytes > 0) {
            cut = Math.max(Math.min(maxBytes, MIN_COPY_BYTES), Math.min(maxBytes, cutBytes));
        }
        smallestCut = Math.min(smallestCut, cut);
        largestCut = Math.max(largestCut, cut);
        lastCut = cut;
        lastMax = maxBytes;
        return cut;
    }

    /**
     * At the end of a rate period: the size copies are cut to from now on (0: not cut). Only
     * while the copies queue (the filtered queueing delay is at least half the allowance) and the
     * window is below its ceiling: then the link is full and the rate measured is the link's. A
     * resync paced by the rate limiter, whose copies do not queue, is not cut even when a noisy
     * sample ended slow start and brought the window below its ceiling. At the ceiling the
     * rate is what the window lets through (a distant link: a window of copies per round trip);
     * cutting on it would shrink the copies, and with them the rate, period after period, so the
     * cut grows back instead (doubling per period). In slow start nothing is cut.
     */
    private void recut() {
        if (!adaptive || copyNanos <= 0 || slowStart) {
            cutBytes = 0;
        } else if (limit() >= max || lastDelay < cutAllowance / 2) {
            if (cutBytes > 0) cutBytes = lastMax > 0 && cutBytes * 2 >= lastMax ? 0 : cutBytes * 2;
        } else {
            long want = (long) Math.min(Long.MAX_VALUE / 2, bytesPerNano * copyNanos);
            cutBytes = Long.highestOneBit(Math.max(1, want));
        }
    }

    /** True while copies are cut shorter than the largest asked for. */
    private boolean cutting() {
        return lastCut > 0 && lastCut < lastMax;
    }

    /** The size the last copy was cut to (bytes; 0 before any): what status shows. */
    public synchronized long lastCopyBytes() {
        return lastCut;
    }

    /** Called as a copy is started with {@code inFlight} copies (this one included) in flight: statistics only. */
    public synchronized void started(int inFlight) {
        limitSum += inFlight;
        limitSamples++;
        lowest = Math.min(lowest, inFlight);
        highest = Math.max(highest, inFlight);
    }

    /**
     * A copy of {@code bytes} took {@code latencyNanos} (from issuing its read of the primary
     * until its secondary write returned, without the range lock's wait); {@code now} is
     * {@link System#nanoTime()} or a test's clock.
     */
    public void completed(long bytes, long latencyNanos, long now) {
        completed(bytes, latencyNanos, now, true);
    }

    /**
     * As above; {@code sample} false: the copy ran beside something that delayed it other than
     * the copies queued with it (a flush of the secondary), so it counts in the statistics only.
     */
    public synchronized void completed(long bytes, long latencyNanos, long now, boolean sample) {
        latencyNanos = Math.max(1, latencyNanos);
        latencySum += latencyNanos;
        latencySamples++;
        if (rateStart == Long.MIN_VALUE || now - lastCompletion > RATE_PERIOD_NANOS) {
            rateStart = now - latencyNanos; // the first copy, or after a pause: a new period from this copy's start
            rateBytes = 0;
        }
        lastCompletion = now;
        rateBytes += bytes;
        if (now - rateStart >= RATE_PERIOD_NANOS) {
            bytesPerNano = (double) rateBytes / (now - rateStart);
            recut();
            rateStart = now;
            rateBytes = 0;
        }
        if (!sample) {
            skipped++;
            return;
        }
        if (periodStart == Long.MIN_VALUE) {
            periodStart = now;
        } else if (now - periodStart >= 2 * BASE_PERIOD_NANOS) {
            // no copy for a whole period (a pause, an idle pass): both periods' minima are stale
            java.util.Arrays.fill(basePrev, Long.MAX_VALUE);
            java.util.Arrays.fill(baseNow, Long.MAX_VALUE);
            periodStart = now;
        } else if (now - periodStart >= BASE_PERIOD_NANOS) {
            System.arraycopy(baseNow, 0, basePrev, 0, BUCKETS);
            java.util.Arrays.fill(baseNow, Long.MAX_VALUE);
            periodStart = now;
        }
        int b = bucket(bytes);
        baseNow[b] = Math.min(baseNow[b], latencyNanos);
        long base = Math.min(baseNow[b], basePrev[b]);
        // a shorter copy never takes longer unloaded than a longer one: a size class the cut has
        // just moved to has no base of its own yet, and its first copies ran behind the longer
        // copies' queue; without this bound that queue read as its base, and the window let it stay
        for (int k = b + 1; k < BUCKETS; k++) base = Math.min(base, Math.min(baseNow[k], basePrev[k]));
        recent[recentNext] = latencyNanos - base;
        recentNext = (recentNext + 1) % FILTER;
        recentCount = Math.min(FILTER, recentCount + 1);
        long delay = Long.MAX_VALUE;
        for (int i = 0; i < recentCount; i++) delay = Math.min(delay, recent[i]);
        lastDelay = delay;
        if (!adaptive) return;
        long target = Math.max(base, cutting() ? cutAllowance : MIN_ALLOWANCE_NANOS);
        if (slowStart) {
            // the sample itself against half the target, not the filtered delay against the
            // target: a queue shows one copy latency after the copies that built it, and each
            // completion meanwhile grew the window by one (200 Mbit/s, 64 copies: an overshoot
            // to 8 copies in flight and an application-write p99 of 221 ms; now 3, 99 ms in the
            // simulation of WindowControlTest)
            if (latencyNanos - base <= target / 2) {
                window += 1;
            } else {
                slowStart = false;
                window = window / 2;
                lastHalving = now;
            }
        } else if (delay > 2 * target && now - lastHalving >= latencyNanos) {
            window = window / 2;
            lastHalving = now;
        } else {
            double off = Math.max(-1.0, Math.min(1.0, (double) (target - delay) / target));
            window += off / window;
        }
        window = Math.max(1, Math.min(max, window));
    }

    private static int bucket(long bytes) {
        return Math.min(BUCKETS - 1, 63 - Long.numberOfLeadingZeros(Math.max(1, bytes)));
    }

    /**
     * What the window did: {@code mean} copies in flight at each copy's start, the lowest and
     * highest such count, the mean copy latency and the least one of the largest size class seen
     * (ns; 0 before any copy), how many copies were no sample (beside a flush), and the shortest
     * and longest copy {@link #copyBytes} cut (0 before any).
     */
    public record Stats(boolean adaptive, int max, double mean, int lowest, int highest, long meanLatency, long baseLatency,
                        long besideFlush, long smallestCopy, long largestCopy) {
    }

    public synchronized Stats stats() {
        long base = 0;
        for (int b = BUCKETS - 1; b >= 0; b--) {
            long m = Math.min(baseNow[b], basePrev[b]);
            if (m != Long.MAX_VALUE) {
                base = m;
                break;
            }
        }
        return new Stats(adaptive, max, limitSamples == 0 ? 0 : (double) limitSum / limitSamples,
                limitSamples == 0 ? 0 : lowest, highest, latencySamples == 0 ? 0 : latencySum / latencySamples, base, skipped,
                largestCut == 0 ? 0 : smallestCut, largestCut);
    }
}
