package org.ublkmirror.fork;

import org.junit.jupiter.api.Test;
import org.ublkmirror.leg.FaultyStore;
import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.Role;

import java.nio.ByteBuffer;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import java.util.UUID;

import static org.junit.jupiter.api.Assertions.*;

class IntentRecordTest {
    static final UUID VOL = new UUID(0x11L, 0x22L);

    @Test
    void pinsTheBytes() {
        ByteBuffer b = new IntentRecord(5, VOL, 1024, new TreeSet<>(List.of(3L, 700L))).encode();
        byte[] head = new byte[64];
        b.get(0, head);
        assertEquals("554d494e544e5431" + "00000001" + "00000002" + "0000000000000005"
                        + "00000000000000110000000000000022" + "00000400" + "00000000"
                        + "0000000000000003" + "00000000000002bc",
                HexFormat.of().formatHex(head));
        assertEquals(505, IntentRecord.MAX_REGIONS);
        assertNotEquals(0, b.getInt(4092));
    }

    @Test
    void tornRecordFallsBackToTheOtherSlot() throws Exception {
        FaultyStore st = new FaultyStore("p", 4 << 20);
        Leg leg = Leg.create(st, new Leg.Spec("t", VOL, Role.PRIMARY, 4096, 64, 8, 8, 1));
        new IntentRecord(1, VOL, 8, new TreeSet<>(List.of(1L))).write(leg, true);
        new IntentRecord(2, VOL, 8, new TreeSet<>(List.of(1L, 2L))).write(leg, true);
        assertEquals(new TreeSet<>(List.of(1L, 2L)), IntentRecord.read(leg).regions);
        // seq 3 goes to slot A and is torn
        new IntentRecord(3, VOL, 8, new TreeSet<>(List.of(9L))).write(leg, true);
        st.write(Leg.INTENT_OFFSET + 60, ByteBuffer.wrap(new byte[] {1, 2, 3, 4}), false);
        IntentRecord r = IntentRecord.read(leg);
        assertEquals(2, r.seq);
        assertEquals(new TreeSet<>(List.of(1L, 2L)), r.regions);
    }

    @Test
    void everyFlippedByteIsRejected() {
        ByteBuffer good = new IntentRecord(5, VOL, 8, new TreeSet<>(List.of(3L))).encode();
        Random rnd = new Random(3);
        for (int i = 0; i < 200; i++) {
            ByteBuffer b = ByteBuffer.allocate(IntentRecord.SIZE);
            b.put(good.duplicate()).flip();
            int pos = rnd.nextBoolean() ? rnd.nextInt(64) : rnd.nextInt(IntentRecord.SIZE);
            b.put(pos, (byte) (b.get(pos) ^ (1 + rnd.nextInt(255))));
            assertNull(IntentRecord.decode(b, VOL), "flip at " + pos);
        }
    }
}
