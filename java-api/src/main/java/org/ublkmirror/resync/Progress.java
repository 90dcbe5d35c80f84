package org.ublkmirror.resync;

/**
 * A snapshot of a resync's progress.
 *
 * @param bytesPerSecond recent copy rate (exponentially smoothed), 0 before the first extent
 * @param etaSeconds     estimated seconds to finish, -1 when unknown
 * @param failure        the cause when state is FAILED, else null
 */
public record Progress(State state, long blocksDone, long blocksTotal, long bytesCopied,
                       long checkpoints, double bytesPerSecond, long etaSeconds, Throwable failure) {

    public enum State { IDLE, RUNNING, PAUSED, DONE, FAILED, CANCELLED;

        public boolean isTerminal() {
            return this == DONE || this == FAILED || this == CANCELLED;
        }
    }

    public double fraction() {
        return blocksTotal == 0 ? 1.0 : (double) blocksDone / blocksTotal;
    }
}
