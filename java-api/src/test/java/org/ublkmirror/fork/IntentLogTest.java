package org.ublkmirror.fork;

import org.junit.jupiter.api.Test;
import org.ublkmirror.leg.FaultyStore;
import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.Role;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
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

    /**
     * Random begins, ends, marks and flushes against the record's invariants, read back from the
     * leg after every step: a region with a write in flight, or with a write that ended after the
     * last flush known to cover it, is in the durable record and reported unclean; the record holds
     * exactly the active regions; a flush is forced only when the set is over its size.
     */
    @Test
    void randomOperationsKeepTheRecordTrue() throws Exception {
        for (int seed = 1; seed <= 20; seed++) {
            Random rnd = new Random(seed);
            Leg p = leg("p");
            int maxActive = 1 + rnd.nextInt(12);
            int[] flushes = {0};
            IntentLog log = new IntentLog(p, null, maxActive, () -> flushes[0]++, 0);
            List<long[]> inflight = new ArrayList<>();
            Map<Long, Long> lastEnd = new HashMap<>(); // region -> op count at which its last write ended
            List<Long> marks = new ArrayList<>();
            long ops = 0, cleanMark = 0;
            int regions = 4 + rnd.nextInt(60);
            for (int op = 0; op < 3000; op++) {
                String at = "seed " + seed + " op " + op;
                int k = rnd.nextInt(10);
                if (k < 4 && inflight.size() < 24) {
                    long start = rnd.nextInt(regions * RB), count = rnd.nextInt(3 * RB);
                    int before = log.activeRegions(), forcedBefore = flushes[0];
                    log.begin(start, count, false);
                    if (flushes[0] > forcedBefore) {
                        assertTrue(before + spanned(start, count) > maxActive, at + ": a flush forced with room in the set");
                        cleanMark = ops; // the forced flush covers every write ended so far
                    }
                    inflight.add(new long[] {start, count});
                } else if (k < 8 && !inflight.isEmpty()) {
                    long[] w = inflight.remove(rnd.nextInt(inflight.size()));
                    log.end(w[0], w[1]);
                    ops++;
                    for (long r : regionsOf(w[0], w[1])) lastEnd.put(r, ops);
                } else if (k == 8) {
                    assertEquals(ops, log.mark(), at);
                    marks.add(ops);
                } else if (!marks.isEmpty()) {
                    long m = marks.remove(rnd.nextInt(marks.size()));
                    log.flushed(m);
                    cleanMark = Math.max(cleanMark, m);
                }
                TreeSet<Long> mustHold = new TreeSet<>();
                for (long[] w : inflight) mustHold.addAll(regionsOf(w[0], w[1]));
                for (Map.Entry<Long, Long> e : lastEnd.entrySet()) if (e.getValue() > cleanMark) mustHold.add(e.getKey());
                IntentRecord rec = IntentRecord.read(p); // none until the first begin
                TreeSet<Long> record = rec == null ? new TreeSet<>() : rec.regions;
                assertTrue(record.containsAll(mustHold), at + ": record " + record + " lacks some of " + mustHold);
                TreeSet<Long> unclean = new TreeSet<>(log.uncleanRegions());
                assertEquals(mustHold, unclean, at + ": unclean regions");
                assertEquals(record.size(), log.activeRegions(), at + ": the record holds the active set");
                assertEquals(flushes[0], log.forcedFlushes(), at);
            }
        }
    }

    static List<Long> regionsOf(long start, long count) {
        List<Long> out = new ArrayList<>();
        for (long r = start / RB; r <= (start + Math.max(1, count) - 1) / RB; r++) out.add(r);
        return out;
    }

    static int spanned(long start, long count) {
        return regionsOf(start, count).size();
    }
}
