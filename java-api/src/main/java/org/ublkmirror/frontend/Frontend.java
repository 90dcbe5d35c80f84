package org.ublkmirror.frontend;

import java.io.Closeable;
import java.io.IOException;

/** A kernel block device serving a {@link BlockTarget}: FUSE + loop, or ublk. */
public interface Frontend extends Closeable {
    /** "fuse" or "ublk". */
    String kind();

    /** The device node applications use, e.g. /dev/loop3 or /dev/ublkb0. */
    String device();

    /** Removes the device: callers have checked nobody has it mounted. */
    @Override
    void close() throws IOException;
}
