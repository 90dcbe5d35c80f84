package org.ublkmirror.resync;

import java.io.IOException;

/**
 * What the engine does as resync makes progress.
 *
 * <p>Contract (the flush-before-checkpoint rule): {@link #onCopied} may clear the blocks from
 * the <em>in-memory</em> tracking log, but the engine must not persist that cleared state except
 * in {@link #checkpoint()}: Resync calls checkpoint only after {@code secondary.flush()} has
 * succeeded, so every cleared bit on disk stands for data that is durable on the secondary.
 */
public interface ResyncListener {

    /**
     * The extent was written to the secondary (not yet durable). Called while Resync still holds
     * the range lock over it, so no application write to these blocks can interleave between the
     * copy and this call (a write that fails on the secondary and re-dirties the blocks is
     * recorded after it, and wins).
     */
    void onCopied(Extent extent);

    /** Persist the tracking log: every extent reported so far is durable on the secondary. */
    void checkpoint() throws IOException;

    /** The state changed (RUNNING, PAUSED, DONE, ...). */
    default void onStateChange(Progress.State state) {
    }

    ResyncListener NONE = new ResyncListener() {
        @Override
        public void onCopied(Extent extent) {
        }

        @Override
        public void checkpoint() {
        }
    };
}
