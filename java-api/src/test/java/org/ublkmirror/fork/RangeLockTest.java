package org.ublkmirror.fork;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

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
}
