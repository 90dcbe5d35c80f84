package org.ublkmirror.frontend;

/**
 * What `mirrorctl start` passes to a frontend. {@code queues}, {@code depth}: 0 means the
 * frontend's default (ublk: 1 queue of depth 64; FUSE ignores both). {@code recover}: ublk
 * re-attaches to a device its killed predecessor left (user recovery) instead of making a new one.
 * {@code zeroCopy}: ublk uses zero copy where the kernel offers it (a recovered device keeps the
 * mode it was made with).
 */
public record FrontendOptions(int queues, int depth, boolean recover, boolean zeroCopy) {
    public FrontendOptions {
        if (queues < 0 || depth < 0) throw new IllegalArgumentException("--queues and --depth must be positive");
    }

    public static FrontendOptions defaults() {
        return new FrontendOptions(0, 0, true, true);
    }
}
