package org.ublkmirror.resync;

import java.io.IOException;

/**
 * What the engine does as resync makes progress.
 *
 * <p>Contract (the flush-before-checkpoint rule). {@link #onCopied} reports an extent whose write
 * to the secondary returned but is not yet durable there: the engine keeps it <em>pending</em>
 * and must not let a persisted log call it clean yet. {@link #barrier()} comes right before a
 * flush of the secondary is issued: every extent reported before it is covered by that flush.
 * {@link #checkpoint()} comes after that flush succeeded: the extents reported before the
 * matching barrier are durable on the secondary; the engine may now clear them and persist the
 * log. Extents reported after the barrier (copies go on while a pipelined checkpoint flushes)
 * stay pending for the next one. A barrier whose flush failed is followed by another barrier:
 * its extents are covered by the next successful flush. barrier and checkpoint come from one
 * thread at a time, in turn; onCopied comes from the copy threads, at any time.
 */
public interface ResyncListener {

    /**
     * The extent was written to the secondary (not yet durable). Called while Resync still holds
     * the range lock over it, so no application write to these blocks interleaves between the
     * copy and this call. A write to these blocks that the engine tracks after this call (the
     * secondary failed it) must win over the pending clear.
     */
    void onCopied(Extent extent);

    /** A flush of the secondary is about to be issued: it covers every extent reported so far. */
    void barrier();

    /** The flush after the last barrier succeeded: clear and persist what it covers. */
    void checkpoint() throws IOException;

    /** The state changed (RUNNING, PAUSED, DONE, ...). */
    default void onStateChange(Progress.State state) {
    }

    ResyncListener NONE = new ResyncListener() {
        @Override
        public void onCopied(Extent extent) {
        }

        @Override
        public void barrier() {
        }

        @Override
        public void checkpoint() {
        }
    };
}
