package org.ublkmirror.fork;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.*;

class RangeLockTest {
    @Test
    void overlappingWaitsDisjointDoesNot() throws Exception {
        RangeLock l = new RangeLock();
        RangeLock.Held a = l.lock(0, 10);
        assertNotNull(l.tryLock(10, 5), "disjoint range must be granted");
        assertNull(l.tryLock(9, 2), "overlapping range must not be granted");
        CountDownLatch got = new CountDownLatch(1);
        Thread t = new Thread(() -> {
            try (RangeLock.Held h = l.lock(5, 1)) {
                got.countDown();
            } catch (InterruptedException e) {
                throw new RuntimeException(e);
            }
        });
        t.start();
        assertFalse(got.await(100, TimeUnit.MILLISECONDS));
        a.close();
        assertTrue(got.await(5, TimeUnit.SECONDS));
        t.join();
    }

    @Test
    void overlappingRequestsAreGrantedInArrivalOrder() throws Exception {
        RangeLock l = new RangeLock();
        RangeLock.Held first = l.lock(0, 4);
        List<Integer> order = Collections.synchronizedList(new ArrayList<>());
        List<Thread> ts = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            int id = i;
            Thread t = new Thread(() -> {
                try (RangeLock.Held h = l.lock(id % 2, 2)) {
                    order.add(id);
                } catch (InterruptedException e) {
                    throw new RuntimeException(e);
                }
            });
            t.start();
            // wait until it is queued, so arrival order is known
            long until = System.currentTimeMillis() + 5000;
            while (l.snapshot().size() < i + 2 && System.currentTimeMillis() < until) Thread.sleep(1);
            ts.add(t);
        }
        first.close();
        for (Thread t : ts) t.join();
        assertEquals(List.of(0, 1, 2, 3, 4), order);
    }

    @Test
    void adjacentRangesDoNotOverlapAndAnEmptyRangeIsOneBlock() {
        RangeLock l = new RangeLock();
        long a = l.tryLock(10, 5).seq;
        assertNotNull(l.tryLock(15, 1), "[15,16) touches [10,15) only at its end");
        assertNotNull(l.tryLock(9, 1), "[9,10) ends where [10,15) starts");
        assertNull(l.tryLock(14, 1));
        assertNull(l.tryLock(0, 11));
        assertNull(l.tryLock(12, 0), "count 0 takes one block");
        assertNotNull(l.tryLock(16, 0));
        assertNull(l.tryLock(16, 0));
        l.release(a);
        assertNotNull(l.tryLock(10, 5));
    }

    @Test
    void ticketsReleaseOnceAndAFailedTryLockLeavesNothingBehind() throws Exception {
        RangeLock l = new RangeLock();
        long a = l.acquire(0, 8);
        assertNull(l.tryLock(4, 1));
        assertEquals(1, l.snapshot().size(), "the refused request is not queued");
        l.release(a);
        long b = l.acquire(0, 8);
        l.release(a); // again: must not release b
        assertNull(l.tryLock(0, 1), "b still holds [0,8)");
        RangeLock.Held h = l.tryLock(8, 8);
        h.close();
        h.close();
        assertNull(l.tryLock(0, 1), "closing a Held twice released nothing else");
        l.release(b);
        assertTrue(l.snapshot().isEmpty());
    }

    @Test
    void anInterruptedWaiterLeavesTheQueue() throws Exception {
        RangeLock l = new RangeLock();
        long a = l.acquire(0, 4);
        AtomicReference<Throwable> got = new AtomicReference<>();
        Thread t = new Thread(() -> {
            try {
                l.acquire(2, 6); // waits for a
            } catch (Throwable e) {
                got.set(e);
            }
        });
        t.start();
        long until = System.currentTimeMillis() + 5000;
        while (l.snapshot().size() < 2 && System.currentTimeMillis() < until) Thread.sleep(1);
        assertNull(l.tryLock(6, 1), "the waiter on [2,8) comes first for block 6");
        t.interrupt();
        t.join(5000);
        assertInstanceOf(InterruptedException.class, got.get());
        assertNotNull(l.tryLock(6, 1), "the interrupted waiter left");
        l.release(a);
    }

    /**
     * Many threads on random, often overlapping ranges (more than the initial table holds): never
     * two holders of one block, and overlapping requests are served in arrival order.
     */
    @Test
    void manyWaitersOnOverlappingRanges() throws Exception {
        RangeLock l = new RangeLock();
        int blocks = 64, threads = 16, rounds = 300;
        AtomicInteger[] holders = new AtomicInteger[blocks];
        for (int i = 0; i < blocks; i++) holders[i] = new AtomicInteger();
        AtomicReference<String> bad = new AtomicReference<>();
        AtomicInteger done = new AtomicInteger();
        List<Thread> ts = new ArrayList<>();
        for (int i = 0; i < threads; i++) {
            int id = i;
            Thread t = new Thread(() -> {
                Random rnd = new Random(id);
                try {
                    for (int r = 0; r < rounds; r++) {
                        int start = rnd.nextInt(blocks), count = 1 + rnd.nextInt(Math.min(8, blocks - start));
                        long ticket = l.acquire(start, count);
                        for (int b = start; b < start + count; b++) {
                            if (holders[b].incrementAndGet() != 1) bad.set("block " + b + " held twice");
                        }
                        if (rnd.nextInt(8) == 0) Thread.yield();
                        for (int b = start; b < start + count; b++) holders[b].decrementAndGet();
                        l.release(ticket);
                        done.incrementAndGet();
                    }
                } catch (InterruptedException e) {
                    bad.set("interrupted");
                }
            });
            ts.add(t);
            t.start();
        }
        // meanwhile: hold 100 disjoint ranges past the end, so the table grows under contention
        List<RangeLock.Held> far = new ArrayList<>();
        for (int i = 0; i < 100; i++) far.add(l.lock(1000 + 2L * i, 1));
        for (RangeLock.Held h : far) h.close();
        for (Thread t : ts) t.join(60_000);
        assertNull(bad.get());
        assertEquals(threads * rounds, done.get());
        assertTrue(l.snapshot().isEmpty());

        // arrival order among overlapping waiters, with disjoint requests queued between them
        long first = l.acquire(0, 4);
        List<Integer> order = Collections.synchronizedList(new ArrayList<>());
        List<Thread> ws = new ArrayList<>();
        for (int i = 0; i < 100; i++) {
            int id = i;
            boolean overlapping = i % 3 != 0;
            Thread t = new Thread(() -> {
                try {
                    long tk = l.acquire(overlapping ? id % 4 : 100 + id, 1);
                    if (overlapping) order.add(id);
                    l.release(tk);
                } catch (InterruptedException e) {
                    throw new RuntimeException(e);
                }
            });
            t.start();
            ws.add(t);
            if (overlapping) {
                long until = System.currentTimeMillis() + 5000;
                int queued = 1 + (int) ws.stream().filter(Thread::isAlive).count();
                while (l.snapshot().size() < queued && System.currentTimeMillis() < until) Thread.sleep(1);
            } else {
                t.join(5000); // disjoint: granted at once
            }
        }
        l.release(first);
        for (Thread t : ws) t.join(10_000);
        // per block, the waiters for it ran in their arrival order
        for (int blk = 0; blk < 4; blk++) {
            List<Integer> mine = new ArrayList<>();
            for (int id : order) if (id % 4 == blk) mine.add(id);
            List<Integer> sorted = new ArrayList<>(mine);
            Collections.sort(sorted);
            assertEquals(sorted, mine, "block " + blk);
        }
        assertEquals(66, order.size());
    }

    @Test
    void tryAcquireTakesAFreeRangeAndNeverWaits() throws Exception {
        RangeLock l = new RangeLock();
        long a = l.tryAcquire(10, 5);
        assertTrue(a >= 0, "a free range is taken");
        assertEquals(-1, l.tryAcquire(14, 3), "overlapping a held range: not taken");
        assertEquals(1, l.snapshot().size(), "and nothing left queued for it");
        long b = l.tryAcquire(15, 3);
        assertTrue(b >= 0, "the blocks right after the held range");
        l.release(a);
        long c = l.tryAcquire(14, 1);
        assertTrue(c >= 0, "free once released");
        l.release(b);
        l.release(c);
        assertEquals(0, l.snapshot().size());
    }
}
