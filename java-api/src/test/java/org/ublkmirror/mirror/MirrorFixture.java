package org.ublkmirror.mirror;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.leg.Leg;

import java.nio.file.Path;

/** A test's mirror over files in a temporary directory, closed after each test if still open. */
abstract class MirrorFixture {
    static final int BS = 4096;
    static final long REGION = (long) Leg.DEFAULT_REGION_BLOCKS * BS;

    @TempDir
    Path dir;
    Mirror m;

    @AfterEach
    void closeMirror() throws Exception {
        if (m != null && m.state() != Mirror.State.CLOSED) m.close();
    }
}
