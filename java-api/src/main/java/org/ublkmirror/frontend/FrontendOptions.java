package org.ublkmirror.frontend;

/**
 * What `mirrorctl start` passes to a frontend. {@code queues}, {@code depth}: 0 means the
 * frontend's default (ublk: 1 queue of depth 64; FUSE ignores both). {@code workers}: threads
 * serving requests in the engine, 0 for the frontend's default (ublk: twice the CPUs, 4 to 16,
 * {@link org.ublkmirror.frontend.ublk.UblkDevice.Options#defaultWorkers()}; FUSE: 8 readers of /dev/fuse). {@code recover}: ublk
 * re-attaches to a device its killed predecessor left (user recovery) instead of making a new one.
 * {@code zeroCopy}: ublk uses zero copy where the kernel offers it (a recovered device keeps the
 * mode it was made with). {@code maxIoBytes}: ublk's largest request, 0 for its default (1 MiB;
 * a recovered device keeps the size it was made with).
 */
public record FrontendOptions(int queues, int depth, int workers, boolean recover, boolean zeroCopy, int maxIoBytes) {
    public FrontendOptions {
        if (queues < 0 || depth < 0 || workers < 0 || maxIoBytes < 0) {
            throw new IllegalArgumentException("--queues, --depth, --workers and --max-io must be positive");
        }
    }

    public FrontendOptions(int queues, int depth, int workers, boolean recover, boolean zeroCopy) {
        this(queues, depth, workers, recover, zeroCopy, 0);
    }

    public static FrontendOptions defaults() {
        return new FrontendOptions(0, 0, 0, true, true, 0);
    }
}
