package org.ublkmirror.resync;

import org.junit.jupiter.api.Test;
import org.roaringbitmap.longlong.Roaring64Bitmap;
import org.roaringbitmap.longlong.Roaring64NavigableMap;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ExtentsTest {

    /** One block at a time: extend the last extent if adjacent and not full, else start one. */
    static List<Extent> naive(TreeSet<Long> blocks, long max) {
        List<long[]> runs = new ArrayList<>();
        for (long b : blocks) {
            long[] last = runs.isEmpty() ? null : runs.get(runs.size() - 1);
            if (last != null && last[0] + last[1] == b && last[1] < max) {
                last[1]++;
            } else {
                runs.add(new long[] {b, 1});
            }
        }
        List<Extent> out = new ArrayList<>();
        for (long[] r : runs) {
            out.add(new Extent(r[0], r[1]));
        }
        return out;
    }

    @Test
    void randomSetsMatchNaiveReference() {
        Random rnd = new Random(42);
        for (int iter = 0; iter < 300; iter++) {
            TreeSet<Long> set = new TreeSet<>();
            long base = rnd.nextBoolean() ? 0 : (rnd.nextLong() >>> 2);
            int runs = rnd.nextInt(50);
            for (int r = 0; r < runs; r++) {
                long s = base + rnd.nextInt(10_000);
                int len = 1 + rnd.nextInt(rnd.nextBoolean() ? 4 : 700);
                for (int i = 0; i < len; i++) {
                    set.add(s + i);
                }
            }
            long max = new long[] {1, 2, 3, 16, 256, Long.MAX_VALUE}[rnd.nextInt(6)];
            List<Extent> expected = naive(set, max);
            List<Extent> got = Extents.coalesce(set.stream().mapToLong(Long::longValue).iterator(), max);
            assertEquals(expected, got, "max=" + max);
            assertEquals(set.size(), Extents.totalBlocks(got));
            for (Extent e : got) {
                assertTrue(e.count() <= max);
            }
            Roaring64Bitmap rb = new Roaring64Bitmap();
            Roaring64NavigableMap nm = new Roaring64NavigableMap();
            set.forEach(rb::addLong);
            set.forEach(nm::addLong);
            assertEquals(expected, Extents.of(rb, max));
            assertEquals(expected, Extents.of(nm, max));
        }
    }

    @Test
    void defaultIsOneMebibyteAtFourKib() {
        Roaring64Bitmap rb = new Roaring64Bitmap();
        rb.addRange(10, 10 + 600);
        assertEquals(List.of(new Extent(10, 256), new Extent(266, 256), new Extent(522, 88)), Extents.of(rb));
    }

    @Test
    void emptyAndDuplicatesAndUnsorted() {
        assertEquals(List.of(), Extents.coalesce(Arrays.stream(new long[0]).iterator(), 8));
        assertEquals(List.of(new Extent(1, 3)), Extents.coalesce(Arrays.stream(new long[] {1, 2, 2, 3}).iterator(), 8));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Extents.coalesce(Arrays.stream(new long[] {5, 3}).iterator(), 8));
        assertTrue(e.getMessage().contains("not sorted"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Extents.coalesce(Arrays.stream(new long[] {1}).iterator(), 0));
        assertThrows(IllegalArgumentException.class,
                () -> Extents.checkSortedDisjoint(List.of(new Extent(0, 4), new Extent(3, 1))));
    }
}
