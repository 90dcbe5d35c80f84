package org.ublkmirror.sys;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;

/** The ring itself, without FUSE: NOPs go in, their completions come back in order, with their user data. */
class IoUringTest {

    @Test
    void nopsRoundTripAndTheQueueWraps() throws Exception {
        try (IoUring r = IoUring.create(4, IoUring.SETUP_SINGLE_ISSUER | IoUring.SETUP_DEFER_TASKRUN)) {
            long next = 1;
            for (int round = 0; round < 10; round++) { // 30 SQEs through a 4-entry ring: head and tail wrap
                for (int i = 0; i < 3; i++) {
                    ByteBuffer s = r.nextSqe();
                    assertNotNull(s, "free SQE");
                    assertEquals(IoUring.SQE_SIZE, s.capacity());
                    s.put(IoUring.SQE_OPCODE, (byte) IoUring.OP_NOP);
                    s.putLong(IoUring.SQE_USER_DATA, next + i);
                }
                assertEquals(3, r.submitAndWait(3), "SQEs taken");
                assertEquals(3, r.ready(), "completions");
                for (int i = 0; i < 3; i++) {
                    assertEquals(next + i, r.cqeUserData(i));
                    assertEquals(0, r.cqeResult(i));
                }
                r.consume(3);
                assertEquals(0, r.ready());
                next += 3;
            }
        }
    }

    @Test
    void aFullSubmissionQueueSaysSo() throws Exception {
        try (IoUring r = IoUring.create(2, 0)) {
            assertNotNull(r.nextSqe());
            assertNotNull(r.nextSqe());
            assertNull(r.nextSqe(), "two entries, two SQEs");
            assertEquals(2, r.submitAndWait(2));
            r.consume(r.ready());
            assertNotNull(r.nextSqe(), "room again after the kernel took them");
        }
    }
}
