package org.ublkmirror.gateway;

/**
 * Constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md), the subset both sides of
 * the gateway speak: fixed newstyle negotiation, simple replies.
 */
final class Nbd {
    private Nbd() {
    }

    static final long NBDMAGIC = 0x4e42444d41474943L;      // "NBDMAGIC"
    static final long IHAVEOPT = 0x49484156454F5054L;      // "IHAVEOPT"
    static final long OPT_REPLY_MAGIC = 0x3e889045565a9L;
    static final int REQUEST_MAGIC = 0x25609513;
    static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    static final int STRUCTURED_REPLY_MAGIC = 0x668e33ef;

    // handshake flags (server) and client flags
    static final int FLAG_FIXED_NEWSTYLE = 1;
    static final int FLAG_NO_ZEROES = 2;
    static final int FLAG_C_FIXED_NEWSTYLE = 1;
    static final int FLAG_C_NO_ZEROES = 2;

    // options
    static final int OPT_EXPORT_NAME = 1;
    static final int OPT_ABORT = 2;
    static final int OPT_LIST = 3;
    static final int OPT_STARTTLS = 5;
    static final int OPT_INFO = 6;
    static final int OPT_GO = 7;
    static final int OPT_STRUCTURED_REPLY = 8;

    // option replies
    static final int REP_ACK = 1;
    static final int REP_SERVER = 2;
    static final int REP_INFO = 3;
    static final int REP_ERR = 1 << 31;
    static final int REP_ERR_UNSUP = REP_ERR | 1;
    static final int REP_ERR_POLICY = REP_ERR | 2;
    static final int REP_ERR_INVALID = REP_ERR | 3;
    static final int REP_ERR_PLATFORM = REP_ERR | 4;
    static final int REP_ERR_TLS_REQD = REP_ERR | 5;
    static final int REP_ERR_UNKNOWN = REP_ERR | 6;
    static final int REP_ERR_SHUTDOWN = REP_ERR | 7;
    static final int REP_ERR_BLOCK_SIZE_REQD = REP_ERR | 8;
    static final int REP_ERR_TOO_BIG = REP_ERR | 9;

    // info types
    static final int INFO_EXPORT = 0;
    static final int INFO_NAME = 1;
    static final int INFO_DESCRIPTION = 2;
    static final int INFO_BLOCK_SIZE = 3;

    // transmission flags
    static final int TF_HAS_FLAGS = 1;
    static final int TF_READ_ONLY = 1 << 1;
    static final int TF_SEND_FLUSH = 1 << 2;
    static final int TF_SEND_FUA = 1 << 3;
    static final int TF_ROTATIONAL = 1 << 4;
    static final int TF_SEND_TRIM = 1 << 5;
    static final int TF_SEND_WRITE_ZEROES = 1 << 6;
    static final int TF_CAN_MULTI_CONN = 1 << 8;

    // commands
    static final int CMD_READ = 0;
    static final int CMD_WRITE = 1;
    static final int CMD_DISC = 2;
    static final int CMD_FLUSH = 3;
    static final int CMD_TRIM = 4;
    static final int CMD_WRITE_ZEROES = 6;

    // command flags
    static final int CMD_FLAG_FUA = 1;
    static final int CMD_FLAG_NO_HOLE = 1 << 1;

    // errors
    static final int EPERM = 1;
    static final int EIO = 5;
    static final int ENOMEM = 12;
    static final int EINVAL = 22;
    static final int ENOSPC = 28;
    static final int EOVERFLOW = 75;
    static final int ENOTSUP = 95;
    static final int ESHUTDOWN = 108;

    /** The largest payload (READ or WRITE) either side moves in one request. */
    static final int MAX_PAYLOAD = 32 << 20;

    static String errorName(int e) {
        return switch (e) {
            case EPERM -> "EPERM (operation not permitted)";
            case EIO -> "EIO (I/O error)";
            case ENOMEM -> "ENOMEM (out of memory)";
            case EINVAL -> "EINVAL (invalid argument)";
            case ENOSPC -> "ENOSPC (no space left on device)";
            case EOVERFLOW -> "EOVERFLOW (value too large)";
            case ENOTSUP -> "ENOTSUP (not supported)";
            case ESHUTDOWN -> "ESHUTDOWN (server shutting down)";
            default -> "error " + e;
        };
    }

    static String commandName(int c) {
        return switch (c) {
            case CMD_READ -> "READ";
            case CMD_WRITE -> "WRITE";
            case CMD_DISC -> "DISC";
            case CMD_FLUSH -> "FLUSH";
            case CMD_TRIM -> "TRIM";
            case CMD_WRITE_ZEROES -> "WRITE_ZEROES";
            default -> "command " + c;
        };
    }

    static String replyName(int r) {
        return switch (r) {
            case REP_ACK -> "NBD_REP_ACK";
            case REP_SERVER -> "NBD_REP_SERVER";
            case REP_INFO -> "NBD_REP_INFO";
            case REP_ERR_UNSUP -> "NBD_REP_ERR_UNSUP";
            case REP_ERR_POLICY -> "NBD_REP_ERR_POLICY";
            case REP_ERR_INVALID -> "NBD_REP_ERR_INVALID";
            case REP_ERR_PLATFORM -> "NBD_REP_ERR_PLATFORM";
            case REP_ERR_TLS_REQD -> "NBD_REP_ERR_TLS_REQD";
            case REP_ERR_UNKNOWN -> "NBD_REP_ERR_UNKNOWN";
            case REP_ERR_SHUTDOWN -> "NBD_REP_ERR_SHUTDOWN";
            case REP_ERR_BLOCK_SIZE_REQD -> "NBD_REP_ERR_BLOCK_SIZE_REQD";
            case REP_ERR_TOO_BIG -> "NBD_REP_ERR_TOO_BIG";
            default -> "reply type 0x" + Integer.toHexString(r);
        };
    }
}
