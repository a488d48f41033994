"""Compressed answers decode chunk by chunk to the bytes the metering needs, or fail one way;
what a filter changed is encoded again, piece by piece, to the same coding."""

import gzip
import zlib

import brotli
import pytest
import zstandard

from proxy.encoding import DecodeError, EncodeError, codings, make_decoder, make_encoder

BODY = (
    b'{"id":"msg_01","type":"message","model":"claude-opus-4-8","content":'
    + b'[{"type":"text","text":"'
    + "héllo wörld ".encode() * 400
    + b'"}],'
    + b'"usage":{"input_tokens":11,"output_tokens":7}}'
)


def deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


COMPRESSORS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


def decode_in_chunks(encoding: str, data: bytes, size: int) -> bytes:
    decoder = make_decoder(encoding)
    assert decoder is not None
    out = b"".join(decoder.decode(data[i : i + size]) for i in range(0, len(data), size))
    return out + decoder.flush()


@pytest.mark.parametrize("encoding", sorted(COMPRESSORS))
@pytest.mark.parametrize("size", [1, 7, 1000, 1 << 20])
def test_each_coding_decodes_whatever_the_chunk_size(encoding: str, size: int) -> None:
    assert decode_in_chunks(encoding, COMPRESSORS[encoding](BODY), size) == BODY


@pytest.mark.parametrize("size", [1, 2, 3, 1000])
def test_raw_deflate_as_some_servers_send_it_also_decodes(size: int) -> None:
    assert decode_in_chunks("deflate", deflate_raw(BODY), size) == BODY


def test_stacked_codings_are_undone_in_reverse_order() -> None:
    data = brotli.compress(gzip.compress(BODY))  # "gzip, br": gzip applied first
    assert decode_in_chunks("gzip, br", data, 100) == BODY


def test_coding_names_are_case_insensitive_and_identity_is_skipped() -> None:
    assert codings(" GZip , identity,BR ") == ["gzip", "br"]
    assert decode_in_chunks("X-GZIP", gzip.compress(BODY), 50) == BODY


@pytest.mark.parametrize("header", [None, "", "identity", " Identity "])
def test_an_unencoded_body_needs_no_decoder(header: str | None) -> None:
    assert make_decoder(header) is None


def test_concatenated_gzip_members_decode_as_one_body() -> None:
    data = gzip.compress(BODY[:100]) + gzip.compress(BODY[100:])
    assert decode_in_chunks("gzip", data, 37) == BODY


def test_several_zstd_frames_decode_as_one_body() -> None:
    compress = zstandard.ZstdCompressor().compress
    data = compress(BODY[:100]) + compress(BODY[100:])
    assert decode_in_chunks("zstd", data, 37) == BODY


def test_an_unsupported_coding_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="compress"):
        make_decoder("gzip, compress")


@pytest.mark.parametrize("encoding", sorted(COMPRESSORS))
def test_corrupt_data_raises_only_decode_error(encoding: str) -> None:
    decoder = make_decoder(encoding)
    assert decoder is not None
    with pytest.raises(DecodeError):
        decoder.decode(b"\x00this is not compressed at all, not even a little" * 4)


def test_a_truncated_gzip_body_yields_what_arrived() -> None:
    data = gzip.compress(BODY)
    decoder = make_decoder("gzip")
    assert decoder is not None
    out = decoder.decode(data[: len(data) // 2]) + decoder.flush()
    assert BODY.startswith(out)
    assert len(out) > 0


# --- encoding: what the include_usage filter re-applies to a compressed stream -----------------

PIECES = [BODY[:1000], BODY[1000:1001], BODY[1001:]]


@pytest.mark.parametrize("encoding", sorted(COMPRESSORS))
def test_each_encoded_piece_decodes_at_once_so_a_stream_is_not_held_back(encoding: str) -> None:
    encoder = make_encoder(encoding)
    decoder = make_decoder(encoding)
    assert encoder is not None
    assert decoder is not None
    for piece in PIECES:
        assert decoder.decode(encoder.encode(piece)) == piece
    assert decoder.decode(encoder.finish()) + decoder.flush() == b""


@pytest.mark.parametrize("encoding", [*sorted(COMPRESSORS), "x-gzip", "gzip, br", "br, zstd"])
def test_an_encoded_body_decodes_to_the_same_bytes(encoding: str) -> None:
    encoder = make_encoder(encoding)
    assert encoder is not None
    encoded = b"".join(encoder.encode(piece) for piece in PIECES) + encoder.finish()
    assert decode_in_chunks(encoding, encoded, 333) == BODY


def test_stacked_codings_are_applied_in_header_order() -> None:
    encoder = make_encoder("gzip, br")  # gzip first, then br on top, as a server would
    assert encoder is not None
    encoded = encoder.encode(BODY) + encoder.finish()
    assert gzip.decompress(brotli.decompress(encoded)) == BODY


def test_nothing_in_gives_nothing_out() -> None:
    encoder = make_encoder("gzip")
    assert encoder is not None
    assert encoder.encode(b"") == b""
    assert gzip.decompress(encoder.finish()) == b""


@pytest.mark.parametrize("header", [None, "", "identity", " Identity "])
def test_an_unencoded_body_needs_no_encoder(header: str | None) -> None:
    assert make_encoder(header) is None


def test_an_unsupported_coding_is_an_encode_error() -> None:
    with pytest.raises(EncodeError, match="compress"):
        make_encoder("gzip, compress")
