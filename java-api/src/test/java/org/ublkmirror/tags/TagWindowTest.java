package org.ublkmirror.tags;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.*;

class TagWindowTest {

    @Test
    void outOfOrderCompletionMovesTheWatermarkOnlyPastTheOldest() {
        TagWindow w = new TagWindow(3, 0);
        assertEquals(Tag.of(3, 0), w.watermark());
        assertEquals(0, w.oldestOutstanding());
        long[] t = new long[6];
        for (int i = 1; i <= 5; i++) t[i] = w.issue();
        assertEquals(Tag.of(3, 5), t[5]);
        w.retire(t[4]);
        w.retire(t[2]);
        w.retire(t[3]);
        assertEquals(Tag.of(3, 0), w.watermark(), "tag 1 is still out");
        assertEquals(t[1], w.oldestOutstanding());
        assertEquals(2, w.outstandingCount());
        w.retire(t[1]);
        assertEquals(t[4], w.watermark(), "2, 3 and 4 were retired already");
        assertEquals(t[5], w.oldestOutstanding());
        w.retire(t[5]);
        assertEquals(t[5], w.watermark());
        assertEquals(0, w.outstandingCount());
        long t6 = w.issue();
        assertEquals(Tag.of(3, 6), t6);
        assertEquals(t[5], w.watermark());
    }

    @Test
    void retiringTwiceOrAnotherHostsTagChangesNothing() {
        TagWindow w = new TagWindow(1, 10);
        long a = w.issue(), b = w.issue();
        w.retire(b);
        w.retire(b);
        w.retire(Tag.of(2, 11)); // same sequence as a, another host
        w.retire(Tag.of(1, 5)); // below the window
        w.retire(Tag.of(1, 99)); // never issued
        assertEquals(1, w.outstandingCount());
        assertEquals(Tag.of(1, 10), w.watermark());
        w.retire(a);
        assertEquals(b, w.watermark());
        assertEquals(b, w.lastIssued());
    }

    @Test
    void ringWrapsAroundAndGrowsWhileAnOldTagStaysOut() {
        TagWindow w = new TagWindow(7, 1L << 40); // starts far from 0: ring index is seq modulo its size
        long first = w.issue();
        List<Long> later = new ArrayList<>();
        for (int i = 0; i < 5000; i++) later.add(w.issue()); // span 5001 > the initial ring
        for (int i = 0; i < later.size(); i += 2) w.retire(later.get(i));
        assertEquals(first - 1, w.watermark());
        assertEquals(2501, w.outstandingCount());
        w.retire(first);
        assertEquals(later.get(0), w.watermark(), "later[1] is the oldest now");
        for (int i = 1; i < later.size(); i += 2) w.retire(later.get(i));
        assertEquals(later.get(later.size() - 1), w.watermark());
        // many laps of the ring with a few tags in flight
        long prev = w.lastIssued();
        for (int lap = 0; lap < 20_000; lap++) {
            long x = w.issue(), y = w.issue();
            w.retire(y);
            assertEquals(prev, w.watermark());
            w.retire(x);
            assertEquals(y, w.watermark());
            prev = y;
        }
    }

    /** Random issue and retire against a sorted set of outstanding tags (what TagWindow used to be). */
    @Test
    void matchesASortedSetModel() {
        for (int seed = 1; seed <= 20; seed++) {
            Random rnd = new Random(seed);
            long start = rnd.nextInt(1 << 20);
            TagWindow w = new TagWindow(2, start);
            TreeSet<Long> model = new TreeSet<>();
            List<Long> out = new ArrayList<>();
            long last = start;
            for (int op = 0; op < 50_000; op++) {
                // bursts of issue, long-lived stragglers: spans well past the initial ring
                if (out.isEmpty() || rnd.nextInt(100) < 52) {
                    long t = w.issue();
                    assertEquals(Tag.of(2, ++last), t);
                    model.add(t);
                    out.add(t);
                } else {
                    int i = rnd.nextInt(100) < 97 ? out.size() - 1 - rnd.nextInt(Math.min(out.size(), 64)) : rnd.nextInt(out.size());
                    long t = out.remove(i);
                    w.retire(t);
                    model.remove(t);
                }
                long wm = model.isEmpty() ? Tag.of(2, last) : model.first() - 1;
                assertEquals(wm, w.watermark(), "seed " + seed + " op " + op);
                assertEquals(model.size(), w.outstandingCount());
                assertEquals(model.isEmpty() ? 0 : model.first(), w.oldestOutstanding());
            }
        }
    }

    @Test
    void awaitWatermarkWakesWhenTheOldestRetires() throws Exception {
        TagWindow w = new TagWindow(1, 0);
        long a = w.issue(), b = w.issue();
        CountDownLatch waiting = new CountDownLatch(1);
        AtomicBoolean reached = new AtomicBoolean();
        Thread t = new Thread(() -> {
            try {
                waiting.countDown();
                reached.set(w.awaitWatermark(b, 10_000));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        t.start();
        assertTrue(waiting.await(5, TimeUnit.SECONDS));
        w.retire(b);
        Thread.sleep(50);
        assertTrue(t.isAlive(), "a is still out: the watermark is below b");
        w.retire(a);
        t.join(5000);
        assertFalse(t.isAlive());
        assertTrue(reached.get());
        assertFalse(w.awaitWatermark(w.issue(), 10), "times out");
    }
}
