package org.ublkmirror.frontend;

/**
 * What `mirrorctl start` passes to a frontend. {@code queues}, {@code depth}: 0 means the
 * frontend's default (ublk: 1 queue of depth 64; FUSE ignores both). {@code workers}: threads
 * serving requests in the engine, 0 for the frontend's default (ublk: twice the CPUs, 4 to 16,
 * {@link org.ublkmirror.frontend.ublk.UblkDevice.Options#defaultWorkers()}; FUSE: 8 readers of /dev/fuse). {@code recover}: ublk
 * re-attaches to a device its killed predecessor left (user recovery) instead of making a new one.
 * {@code zeroCopy}: ublk uses zero copy where the kernel offers it (a recovered device keeps the
 * mode it was made with).
 */
public record FrontendOptions(int queues, int depth, int workers, boolean recover, boolean zeroCopy) {
    public FrontendOptions {
        if (queues < 0 || depth < 0 || workers < 0) throw new IllegalArgumentException("--queues, --depth and --workers must be positive");
    }

    public static FrontendOptions defaults() {
        return new FrontendOptions(0, 0, 0, true, true);
    }
}
