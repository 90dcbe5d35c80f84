package org.ublkmirror.fork;

import org.junit.jupiter.api.Test;
import org.ublkmirror.leg.FaultyStore;
import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.Role;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import java.util.UUID;

import static org.junit.jupiter.api.Assertions.*;

class IntentLogTest {
    static final UUID VOL = new UUID(0x31L, 0x32L);
    static final int RB = 8; // blocks per region

    static Leg leg(String name) throws Exception {
        return Leg.create(new FaultyStore(name, 8 << 20), new Leg.Spec(name, VOL, Role.PRIMARY, 4096, 1024, 8, RB, 1));
    }

    @Test
    void lruCleanRegionsLeaveFirstAndAFlushIsForcedOnlyWhenNoneIsClean() throws Exception {
        Leg p = leg("p");
        int[] flushes = {0};
        IntentLog log = new IntentLog(p, null, 4, () -> flushes[0]++, 0);
        for (long r = 0; r < 4; r++) {
            log.begin(r * RB, 1, false);
            log.end(r * RB, 1);
        }
        assertEquals(4, log.activeRegions());
        assertEquals(4, log.recordWrites());
        log.begin(0, 1, false); // region 0 again: no record write, and it becomes the most recently used
        log.end(0, 1);
        assertEquals(4, log.recordWrites());
        assertEquals(List.of(1L, 2L, 3L, 0L), log.uncleanRegions());

        // a fifth region, nothing clean: both legs are flushed, then the LRU ones leave down to 4 - 4/8 = 3
        log.begin(5 * RB, 1, false);
        assertEquals(1, flushes[0]);
        assertEquals(1, log.forcedFlushes());
        assertEquals(3, log.activeRegions());
        assertEquals(new TreeSet<>(List.of(3L, 0L, 5L)), IntentRecord.read(p).regions);
        assertEquals(List.of(5L), log.uncleanRegions(), "5 is in flight; 3 and 0 were flushed");
        log.end(5 * RB, 1);

        // writes ended after a mark are not clean by a flush of that mark
        long mark = log.mark();
        log.begin(6 * RB, 1, false);
        log.end(6 * RB, 1);
        log.flushed(mark);
        assertEquals(List.of(6L), log.uncleanRegions());
        // region 7: 3 and 0 (clean, least recently used) leave, 5 (clean) stays: the set shrinks to 3
        log.begin(7 * RB, 1, false);
        assertEquals(1, flushes[0], "clean regions were there: no forced flush");
        assertEquals(new TreeSet<>(List.of(5L, 6L, 7L)), IntentRecord.read(p).regions);
        log.end(7 * RB, 1);
    }

    @Test
    void aWriteSpanningRegionsHoldsThemAll() throws Exception {
        Leg p = leg("p");
        IntentLog log = new IntentLog(p, null, 16, () -> { }, 0);
        log.begin(RB - 1, RB + 2, false); // blocks 7..16: regions 0, 1, 2
        assertEquals(new TreeSet<>(List.of(0L, 1L, 2L)), IntentRecord.read(p).regions);
        log.flushed(log.mark());
        assertEquals(List.of(0L, 1L, 2L), log.uncleanRegions(), "in flight: not clean whatever the flush");
        log.end(RB - 1, RB + 2);
        assertEquals(List.of(0L, 1L, 2L), log.uncleanRegions());
        log.flushed(log.mark());
        assertEquals(List.of(), log.uncleanRegions());
    }

    /** Random operations on the log and on its previous (boxed-map) implementation give the same results. */
    @Test
    void behavesLikeThePreviousImplementation() throws Exception {
        for (int seed = 1; seed <= 20; seed++) {
            Random rnd = new Random(seed);
            Leg pa = leg("a"), pb = leg("b");
            int maxActive = 1 + rnd.nextInt(12);
            int[] fa = {0}, fb = {0};
            IntentLog a = new IntentLog(pa, null, maxActive, () -> fa[0]++, 0);
            ReferenceIntentLog b = new ReferenceIntentLog(pb, null, maxActive, () -> fb[0]++, 0);
            List<long[]> inflight = new ArrayList<>();
            List<Long> marks = new ArrayList<>();
            int regions = 4 + rnd.nextInt(60);
            for (int op = 0; op < 3000; op++) {
                int k = rnd.nextInt(10);
                if (k < 4 && inflight.size() < 24) {
                    long start = rnd.nextInt(regions * RB), count = rnd.nextInt(3 * RB);
                    a.begin(start, count, false);
                    b.begin(start, count, false);
                    inflight.add(new long[] {start, count});
                } else if (k < 8 && !inflight.isEmpty()) {
                    long[] w = inflight.remove(rnd.nextInt(inflight.size()));
                    a.end(w[0], w[1]);
                    b.end(w[0], w[1]);
                } else if (k == 8) {
                    long ma = a.mark();
                    assertEquals(b.mark(), ma);
                    marks.add(ma);
                } else if (!marks.isEmpty()) {
                    long m = marks.remove(rnd.nextInt(marks.size()));
                    a.flushed(m);
                    b.flushed(m);
                }
                String at = "seed " + seed + " op " + op;
                assertEquals(b.activeRegions(), a.activeRegions(), at);
                assertEquals(b.uncleanRegions(), a.uncleanRegions(), at);
                assertEquals(b.recordWrites(), a.recordWrites(), at);
                assertEquals(b.forcedFlushes(), a.forcedFlushes(), at);
                assertEquals(fb[0], fa[0], at);
            }
            IntentRecord ra = IntentRecord.read(pa), rb = IntentRecord.read(pb);
            assertEquals(rb.seq, ra.seq);
            assertEquals(rb.regions, ra.regions);
        }
    }
}
