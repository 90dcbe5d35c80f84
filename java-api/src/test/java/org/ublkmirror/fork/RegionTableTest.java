package org.ublkmirror.fork;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

class RegionTableTest {

    static List<Long> order(RegionTable t) {
        List<Long> out = new ArrayList<>();
        for (int s = t.first(); s >= 0; s = t.next(s)) out.add(t.region(s));
        return out;
    }

    @Test
    void keepsLeastRecentlyUsedOrder() {
        RegionTable t = new RegionTable(4);
        int a = t.add(10), b = t.add(20), c = t.add(30);
        assertEquals(List.of(10L, 20L, 30L), order(t));
        t.touch(a);
        assertEquals(List.of(20L, 30L, 10L), order(t));
        t.remove(c);
        assertEquals(List.of(20L, 10L), order(t));
        assertEquals(-1, t.find(30));
        assertEquals(b, t.find(20));
        int d = t.add(40); // reuses the freed slot
        assertEquals(List.of(20L, 10L, 40L), order(t));
        assertEquals(d, t.find(40));
        assertEquals(0, t.inflight(d));
        assertEquals(0, t.lastEnd(d));
    }

    @Test
    void growsPastItsCapacityAndKeepsEverything() {
        RegionTable t = new RegionTable(2);
        for (long r = 0; r < 1000; r++) {
            int s = t.add(r * 7919);
            t.addInflight(s, (int) r);
            t.setLastEnd(s, r + 5);
        }
        assertEquals(1000, t.size());
        for (long r = 0; r < 1000; r++) {
            int s = t.find(r * 7919);
            assertTrue(s >= 0, "region " + r * 7919);
            assertEquals(r, t.inflight(s));
            assertEquals(r + 5, t.lastEnd(s));
        }
        assertEquals(-1, t.find(1));
        assertEquals(0L, order(t).get(0));
        assertEquals(999L * 7919, order(t).get(999));
    }

    /** Random adds, touches, removes and lookups against a LinkedHashMap in access order. */
    @Test
    void behavesLikeAnAccessOrderedLinkedHashMap() {
        for (int seed = 1; seed <= 30; seed++) {
            Random rnd = new Random(seed);
            RegionTable t = new RegionTable(1 + rnd.nextInt(8));
            LinkedHashMap<Long, Long> model = new LinkedHashMap<>(16, 0.75f, true);
            // a small key space, some keys far apart: long probe runs, wrap-around, backward shifts
            int keys = 8 + rnd.nextInt(200);
            for (int op = 0; op < 20_000; op++) {
                long r = rnd.nextInt(keys) * (rnd.nextBoolean() ? 1L : 1L << 33);
                int s = t.find(r);
                assertEquals(model.containsKey(r), s >= 0, "seed " + seed + " op " + op + " find " + r);
                int k = rnd.nextInt(3);
                if (s < 0 && k < 2) {
                    s = t.add(r);
                    long v = rnd.nextLong();
                    t.setLastEnd(s, v);
                    model.put(r, v);
                } else if (s >= 0 && k == 0) {
                    t.touch(s);
                    assertEquals(model.get(r), t.lastEnd(s)); // get: moves r to the end of the model
                } else if (s >= 0 && k == 1) {
                    t.remove(s);
                    model.remove(r);
                }
                assertEquals(model.size(), t.size());
                if (op % 97 == 0) {
                    assertEquals(new ArrayList<>(model.keySet()), order(t), "seed " + seed + " op " + op);
                    for (Map.Entry<Long, Long> e : model.entrySet()) {
                        int x = t.find(e.getKey());
                        assertTrue(x >= 0);
                        assertEquals(e.getValue(), t.lastEnd(x));
                    }
                }
            }
        }
    }
}
