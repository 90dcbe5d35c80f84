package org.ublkmirror.resync;

import org.junit.jupiter.api.Test;

import java.util.PriorityQueue;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The adaptive resync window against a simulated link: copies go out whenever the window allows,
 * cross half the round trip, queue FIFO at one bottleneck that serves a copy in {@code service}
 * ns, and come back after the other half. Virtual time, so the results are exact and the test is
 * not timing-sensitive. What must hold: the window keeps the bottleneck busy (throughput near
 * the link's), without a deep queue in front of it (latency near the unloaded one), on a slow
 * link, a distant one, a noisy one and one that slows down mid-run.
 */
class WindowControlTest {
    static final long MS = 1_000_000L;
    static final long COPY = 1 << 20;

    /** What one simulated run measured over its second half (the first is the controller's start). */
    record Run(double utilisation, double meanLatency, double base, double meanLimit, int maxLimit, int minLimit) {
    }

    /**
     * {@code copies} copies of 1 MiB through a link of round trip {@code rtt} whose bottleneck serves
     * one copy in {@code service} ns (from copy {@code slowAt} on: {@code slowService}); with
     * probability {@code spikeP} a copy's reply is delayed a further {@code spike} ns (noise: a GC
     * pause, a scheduler hiccup, not a queue).
     */
    static Run simulate(WindowControl c, int copies, long service, long rtt, int slowAt, long slowService,
                        double spikeP, long spike, long seed) {
        Random rnd = new Random(seed);
        PriorityQueue<long[]> replies = new PriorityQueue<>((a, b) -> Long.compare(a[0], b[0])); // {arrival, sent, index}
        long now = 0, serverFree = 0;
        int sent = 0, inFlight = 0, done = 0;
        long busyFrom = -1, latencySum = 0, latencies = 0, limitSum = 0, limitSamples = 0;
        int maxLimit = 0, minLimit = Integer.MAX_VALUE;
        long half = copies / 2;
        long halfStart = 0;
        while (done < copies) {
            while (sent < copies && inFlight < c.limit()) {
                long s = sent >= slowAt ? slowService : service;
                long arrive = now + rtt / 2;
                long start = Math.max(arrive, serverFree);
                serverFree = start + s;
                long reply = serverFree + rtt / 2 + (rnd.nextDouble() < spikeP ? spike : 0);
                replies.add(new long[] {reply, now, sent});
                sent++;
                inFlight++;
                c.started(inFlight);
            }
            long[] r = replies.poll();
            now = r[0];
            inFlight--;
            done++;
            c.completed(COPY, r[0] - r[1], now);
            int limit = c.limit();
            assertTrue(limit >= 1 && limit <= c.max(), "limit " + limit + " outside 1.." + c.max());
            if (r[2] >= half) {
                if (halfStart == 0) halfStart = r[1];
                latencySum += r[0] - r[1];
                latencies++;
                limitSum += limit;
                limitSamples++;
                maxLimit = Math.max(maxLimit, limit);
                minLimit = Math.min(minLimit, limit);
            }
        }
        long secondHalfService = (slowAt <= half ? slowService : service);
        double capacity = (double) (now - halfStart) / secondHalfService; // copies the bottleneck could serve
        double base = secondHalfService + rtt;
        return new Run(latencies / capacity, latencySum / (double) latencies / base, base,
                (double) limitSum / limitSamples, maxLimit, minLimit);
    }

    static Run simulate(WindowControl c, int copies, long service, long rtt) {
        return simulate(c, copies, service, rtt, Integer.MAX_VALUE, service, 0, 0, 1);
    }

    @Test
    void aSlowLinkKeepsAboutOneCopyQueued() {
        // 200 Mbit/s: 1 MiB takes 42 ms; a fixed window of 16 puts 16 of them in front of every write
        Run fixed = simulate(WindowControl.fixed(16), 2000, 42 * MS, MS / 5);
        Run adaptive = simulate(WindowControl.adaptive(16), 2000, 42 * MS, MS / 5);
        assertTrue(fixed.meanLatency() > 14, "fixed window 16: latency " + fixed.meanLatency() + " x unloaded");
        assertTrue(adaptive.utilisation() >= 0.97, "the link is not kept busy: " + adaptive);
        assertTrue(adaptive.meanLatency() <= 2.6, "copies queue too deep: " + adaptive);
        assertTrue(adaptive.maxLimit() <= 4, "window: " + adaptive);
        assertTrue(fixed.utilisation() >= 0.97, "fixed: " + fixed);
        System.out.println("slow link: fixed " + fixed + "\n  adaptive " + adaptive);
    }

    @Test
    void slowStartDoesNotOvershootOnAShortResync() {
        // 64 MiB on 200 Mbit/s: the start is a large part of the run; exiting slow start on the
        // filtered delay let the window reach 8 (an application-write p99 of 221 ms, bench)
        WindowControl c = WindowControl.adaptive(16);
        Run r = simulate(c, 64, 42 * MS, MS / 5);
        assertTrue(c.stats().highest() <= 3, "slow start overshoot: " + c.stats());
        assertTrue(r.utilisation() >= 0.95, "the link is not kept busy: " + r); // 32 copies measured: 1/33 is the resolution
    }

    @Test
    void aDistantLinkGetsTheWindowItNeeds() {
        // 2.5 Gbit/s (3.4 ms per MiB) 30 ms away: about 10 copies fill the link
        Run adaptive = simulate(WindowControl.adaptive(64), 4000, 3_400_000, 30 * MS);
        assertTrue(adaptive.utilisation() >= 0.9, "the link is not kept busy: " + adaptive);
        assertTrue(adaptive.meanLatency() <= 2.1, "copies queue too deep: " + adaptive);
        assertTrue(adaptive.meanLimit() >= 9, "window: " + adaptive);
        System.out.println("distant link: " + adaptive);
        // the window is a ceiling: with 4 the link cannot be filled, and it is not exceeded
        Run capped = simulate(WindowControl.adaptive(4), 2000, 3_400_000, 30 * MS);
        assertEquals(4, capped.maxLimit());
        assertTrue(capped.utilisation() < 0.45, "capped: " + capped);
    }

    @Test
    void aFastLocalCopyIsNotThrottledByJitter() {
        // copies of 0.3 ms; one in ten delayed by 5 ms (not a queue): the link must stay busy
        Run noisy = simulate(WindowControl.adaptive(16), 20_000, 300_000, 50_000, Integer.MAX_VALUE, 300_000, 0.1, 5 * MS, 7);
        assertTrue(noisy.utilisation() >= 0.9, "noise collapsed the window: " + noisy);
        System.out.println("noisy fast link: " + noisy);
    }

    @Test
    void aLinkThatSlowsDownShrinksTheWindow() {
        // 2.5 Gbit/s with a 2 ms round trip, then ten times slower from copy 1000 on
        WindowControl c = WindowControl.adaptive(16);
        Run r = simulate(c, 3000, 3_400_000, 2 * MS, 1000, 34 * MS, 0, 0, 3);
        System.out.println("link slowed down: " + r);
        assertTrue(r.utilisation() >= 0.95, "slowed link not kept busy: " + r);
        // the base period has not rolled over (the run is ~70 s of virtual time but the base
        // of the fast link stays for 30-60 s): the window errs towards the application
        assertTrue(r.meanLatency() <= 2.6, "queue after the slow-down: " + r);
    }

    @Test
    void fixedIsAlwaysTheMaximum() {
        WindowControl c = WindowControl.fixed(7);
        for (int i = 0; i < 100; i++) {
            c.completed(COPY, (i % 10 + 1) * 50 * MS, i * MS);
            assertEquals(7, c.limit());
        }
        assertTrue(!c.isAdaptive());
        assertEquals(Math.round(275.0), Math.round(c.stats().meanLatency() / (double) MS), "mean latency");
        assertThrows(IllegalArgumentException.class, () -> WindowControl.adaptive(0));
    }

    @Test
    void startsAtOneAndStaysInItsBounds() {
        WindowControl c = WindowControl.adaptive(3);
        assertEquals(1, c.limit());
        long t = 0;
        for (int i = 0; i < 50; i++) c.completed(COPY, MS, t += MS); // no queueing at all: grows to the ceiling
        assertEquals(3, c.limit());
        for (int i = 0; i < 50; i++) c.completed(COPY, 100 * MS, t += 100 * MS); // 100x the base: back to one
        assertEquals(1, c.limit());
        WindowControl.Stats st = c.stats();
        assertEquals(MS, st.baseLatency());
    }

    @Test
    void copiesBesideAFlushAreNoSample() {
        WindowControl c = WindowControl.adaptive(16);
        long t = 0;
        for (int i = 0; i < 10; i++) c.completed(COPY, MS, t += MS);
        int before = c.limit();
        assertEquals(11, before, "slow start: one more per copy");
        for (int i = 0; i < 20; i++) c.completed(COPY, 500 * MS, t += 500 * MS, false); // waited for the secondary's fsync
        assertEquals(before, c.limit(), "a flush's delay moved the window");
        assertEquals(20, c.stats().besideFlush());
        c.completed(COPY, 500 * MS, t += 500 * MS, true);
        assertTrue(c.limit() < before, "a real queue did not");
    }

    @Test
    void anOperatorChangesTheWindowWhileCopiesRun() {
        WindowControl c = WindowControl.adaptive(16);
        long t = 0;
        for (int i = 0; i < 6; i++) c.completed(COPY, MS, t += MS);
        assertEquals(7, c.limit());
        c.reconfigure(4, true); // a lower ceiling: at once
        assertEquals(4, c.limit());
        c.reconfigure(9, false); // fixed: the ceiling, whatever the latency says
        assertEquals(9, c.limit());
        c.completed(COPY, 900 * MS, t += 900 * MS);
        assertEquals(9, c.limit());
        assertTrue(!c.isAdaptive() && c.max() == 9);
        c.reconfigure(12, true); // back to adaptive: from where it is, down as the latency says (no new slow start)
        assertEquals(9, c.limit());
        for (int i = 0; i < 8; i++) c.completed(COPY, 900 * MS, t += 900 * MS);
        assertTrue(c.limit() < 9, "an adaptive window under a deep queue came down: " + c.limit());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> c.reconfigure(65, true));
        assertEquals("resync window 65 is out of range; use 1..64", e.getMessage());
        assertTrue(c.isAdaptive() && c.max() == 12, "a refused change changes nothing");
    }

    @Test
    void aLongGapForgetsTheOldBase() {
        WindowControl c = WindowControl.adaptive(16);
        long t = 0;
        for (int i = 0; i < 20; i++) c.completed(COPY, MS, t += MS);
        assertEquals(MS, c.stats().baseLatency());
        t += 5 * WindowControl.BASE_PERIOD_NANOS; // paused for minutes; the link is slower now
        c.completed(COPY, 50 * MS, t);
        assertEquals(50 * MS, c.stats().baseLatency(), "the base from before the gap is not kept");
    }

    @Test
    void smallCopiesHaveTheirOwnBase() {
        // 4 KiB copies take 0.1 ms, 1 MiB ones 10 ms: neither looks queued because of the other
        WindowControl c = WindowControl.adaptive(16);
        long t = 0;
        for (int i = 0; i < 400; i++) {
            boolean small = i % 2 == 0;
            c.completed(small ? 4096 : COPY, small ? 100_000 : 10 * MS, t += MS);
        }
        assertEquals(16, c.limit(), "unqueued copies of two sizes kept the window small");
    }

    /** A cut run: the copies' bytes, the link kept busy, and what an application write waits behind. */
    record CutRun(double utilisation, double meanBacklogMs, double maxBacklogMs, long smallest, long largest) {
    }

    /**
     * {@code bytes} to copy through a link of {@code nsPerByte} and round trip {@code rtt}, each
     * copy as large as {@code c.copyBytes(1 MiB)} says at its start. The backlog is the time the
     * bottleneck still has queued when a copy is started (what an application write sent then
     * waits), over the second half of the run.
     */
    static CutRun simulateCut(WindowControl c, long bytes, double nsPerByte, long rtt) {
        PriorityQueue<long[]> replies = new PriorityQueue<>((a, b) -> Long.compare(a[0], b[0])); // {arrival, sent, bytes}
        long now = 0, serverFree = 0, sentBytes = 0, doneBytes = 0, halfStart = -1, busy = 0;
        double backlogSum = 0, backlogMax = 0;
        long backlogs = 0;
        int inFlight = 0;
        while (doneBytes < bytes) {
            while (sentBytes < bytes && inFlight < c.limit()) {
                long n = Math.min(c.copyBytes(COPY), bytes - sentBytes);
                long arrive = now + rtt / 2;
                long backlog = Math.max(0, serverFree - arrive);
                if (sentBytes >= bytes / 2) {
                    if (halfStart < 0) halfStart = now;
                    backlogSum += backlog;
                    backlogMax = Math.max(backlogMax, backlog);
                    backlogs++;
                    busy += (long) (n * nsPerByte);
                }
                long start = Math.max(arrive, serverFree);
                serverFree = start + (long) (n * nsPerByte);
                replies.add(new long[] {serverFree + rtt / 2, now, n});
                sentBytes += n;
                inFlight++;
                c.started(inFlight);
            }
            long[] r = replies.poll();
            now = r[0];
            inFlight--;
            doneBytes += r[2];
            c.completed(r[2], r[0] - r[1], now);
        }
        WindowControl.Stats st = c.stats();
        return new CutRun((double) busy / (serverFree - halfStart), backlogSum / backlogs / MS, backlogMax / MS,
                st.smallestCopy(), st.largestCopy());
    }

    @Test
    void aSlowLinkGetsShortCopiesAndTheApplicationWaitsLess() {
        // 200 Mbit/s (25 MB/s): a 1 MiB copy holds the link for 42 ms
        double slow = 1e9 / 25e6;
        CutRun cut = simulateCut(WindowControl.adaptive(16), 256L << 20, slow, MS / 5);
        CutRun uncut = simulateCut(WindowControl.adaptive(16, 0), 256L << 20, slow, MS / 5); // before: never cut
        System.out.println("200 Mbit/s: cut " + cut + "\n  1 MiB copies " + uncut);
        assertEquals(128 << 10, cut.smallest(), "25 MB/s x 8 ms = 200 KB: 128 KiB copies");
        assertEquals(COPY, cut.largest(), "1 MiB until the rate was known");
        assertEquals(COPY, uncut.smallest());
        assertTrue(cut.utilisation() >= 0.95, "the link is not kept busy with short copies: " + cut);
        assertTrue(uncut.meanBacklogMs() >= 40, "1 MiB copies: " + uncut);
        assertTrue(cut.meanBacklogMs() <= uncut.meanBacklogMs() * 0.7,
                "an application write waits behind as long a backlog as with 1 MiB copies: " + cut + " against " + uncut);
        assertTrue(cut.maxBacklogMs() <= 20, "an application write still waits behind a long backlog: " + cut);
    }

    @Test
    void aNewShorterSizeDoesNotTakeTheQueueForItsBase() {
        // 1 MiB copies unloaded in 7 ms (slow start: the window grows to 5); then the first copy of
        // a new, shorter size comes back in 20 ms, behind a queue. Taken as its own base it would
        // read as unqueued and slow start would go on (6); bounded by the 1 MiB base it is 13 ms
        // of queueing, over half the 20 ms target: slow start ends and the window halves.
        WindowControl c = WindowControl.adaptive(16);
        long t = 0;
        for (int i = 0; i < 4; i++) c.completed(COPY, 7 * MS, t += 7 * MS);
        assertEquals(5, c.limit());
        c.completed(COPY / 2, 20 * MS, t += 20 * MS);
        assertTrue(c.limit() < 5, "the queue behind the first 512 KiB copy was read as its unloaded latency: " + c.limit());
    }

    @Test
    void aGigabitLinkGetsHalfMebibyteCopiesAndStaysFull() {
        // 1 Gbit/s (125 MB/s) 1 ms away: 8 ms carries 1 MB, so 512 KiB copies
        CutRun r = simulateCut(WindowControl.adaptive(16), 1L << 30, 1e9 / 125e6, MS);
        System.out.println("1 Gbit/s: " + r);
        assertEquals(512 << 10, r.smallest(), "1 Gbit/s: " + r);
        assertTrue(r.utilisation() >= 0.95, "1 Gbit/s: " + r);
        assertTrue(r.maxBacklogMs() <= 20, "1 Gbit/s: " + r);
    }

    @Test
    void fastAndDistantLinksKeepLargeCopies() {
        // 3 GB/s locally; 2.5 Gbit/s 30 ms away: 8 ms carries more than 1 MiB on both
        CutRun fast = simulateCut(WindowControl.adaptive(16), 2L << 30, 1e9 / 3e9, 50_000);
        assertEquals(COPY, fast.smallest(), "fast link: " + fast);
        assertTrue(fast.utilisation() >= 0.9, "fast link: " + fast);
        CutRun far = simulateCut(WindowControl.adaptive(64), 1L << 30, 1e9 / 312e6, 30 * MS);
        assertEquals(COPY, far.smallest(), "distant link: " + far);
        assertTrue(far.utilisation() >= 0.9, "distant link: " + far);
        // the same link with a window of 4: the window, not the link, sets the rate (4 MiB per
        // 43 ms); cutting on that rate would shrink copies and rate period after period
        CutRun capped = simulateCut(WindowControl.adaptive(4), 512L << 20, 1e9 / 312e6, 40 * MS);
        assertEquals(COPY, capped.smallest(), "window-limited distant link: " + capped);
        // the fixed mode never cuts, and the cut never goes below 64 KiB nor above the largest copy
        WindowControl fixed = WindowControl.fixed(4);
        fixed.completed(COPY, 500 * MS, 500 * MS);
        fixed.completed(COPY, 500 * MS, 1000 * MS);
        assertEquals(COPY, fixed.copyBytes(COPY));
        WindowControl crawl = WindowControl.adaptive(4);
        long t = 0;
        for (int i = 0; i < 3; i++) crawl.completed(4096, 30 * MS, t += 30 * MS); // unqueued: slow start
        for (int i = 0; i < 12; i++) crawl.completed(4096, 300 * MS, t += 300 * MS); // then queued: a crawling link
        assertTrue(crawl.limit() < 4, "the window came down: " + crawl.limit());
        assertEquals(WindowControl.MIN_COPY_BYTES, crawl.copyBytes(COPY));
        assertEquals(16384, crawl.copyBytes(16384), "a largest copy below 64 KiB is kept");
    }

    @Test
    void aPacedResyncIsNotCutAfterANoisySample() {
        // --resync-rate paces copies of 1 MiB, 200 ms apart (5 MB/s), each alone on a fast link
        // (1 ms); one 30 ms sample (noise) ends slow start and halves the window below its ceiling.
        // The copies never queue, so the rate is the limiter's, not the link's: nothing is cut.
        WindowControl c = WindowControl.adaptive(16);
        long t = 0;
        for (int i = 0; i < 3; i++) c.completed(COPY, MS, t += 200 * MS);
        c.completed(COPY, 30 * MS, t += 200 * MS);
        assertTrue(c.limit() < 16, "the noisy sample brought the window down: " + c.limit());
        for (int i = 0; i < 20; i++) {
            c.completed(COPY, MS, t += 200 * MS);
            assertEquals(COPY, c.copyBytes(COPY), "a paced resync was cut after copy " + i);
        }
    }

    @Test
    void aPauseDoesNotReadAsASlowLink() {
        WindowControl c = WindowControl.adaptive(16);
        long t = 0;
        for (int i = 0; i < 400; i++) c.completed(COPY, MS, t += MS); // 1 GB/s
        assertEquals(COPY, c.copyBytes(COPY));
        t += 60_000 * MS; // paused a minute
        for (int i = 0; i < 300; i++) c.completed(COPY, MS, t += MS);
        assertEquals(COPY, c.copyBytes(COPY), "the pause counted as a slow period");
    }
}
