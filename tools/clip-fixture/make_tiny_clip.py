#!/usr/bin/python3
"""Make a tiny, randomly initialised CLIP model in the layout of public ONNX CLIP exports
(for example Xenova/clip-vit-base-patch32), as a test fixture for `cm probe build`:

    config.json, preprocessor_config.json, tokenizer.json, tokenizer_config.json,
    special_tokens_map.json, onnx/text_model.onnx, onnx/vision_model.onnx

The graphs are written directly with onnx.helper (Debian's python3-onnx + numpy; no torch needed)
and follow the CLIP architecture at toy scale: byte-level BPE tokens -> token + position
embeddings -> one pre-LN transformer block with causal self-attention (quick-GELU MLP) -> final
LayerNorm -> the hidden state at the end-of-text token (argmax of input_ids, as HF CLIP does) ->
text projection. Vision: patch convolution -> class token + position embeddings -> pre-LayerNorm
-> one transformer block -> post-LayerNorm of the class token -> visual projection. Input and
output names match the HF/Optimum exports: input_ids -> text_embeds, last_hidden_state;
pixel_values -> image_embeds, last_hidden_state.

The weights are random (seeded), so the embeddings mean nothing; the fixture exists to test the
whole loading, tokenising, preprocessing and scoring path offline. Deterministic: the same
script gives the same bytes.

Usage: /usr/bin/python3 tools/clip-fixture/make_tiny_clip.py [OUT_DIR]
       (default OUT_DIR: libs/probe/test/fixtures/tiny-clip)
Needs: apt-get install python3-onnx (pulls python3-numpy).
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN = 32
HEADS = 2
MLP = 64
PROJECTION = 32
MAX_POSITIONS = 16
IMAGE_SIZE = 32
PATCH = 8
OPSET = 17
SEED = 20240601

rng = np.random.default_rng(SEED)


def rand(*shape, scale=0.2):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---- tokenizer: CLIP's byte-level BPE at toy scale ----

def bytes_to_unicode():
    """GPT-2/CLIP's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


# A few merges learned from a small word list, so that the BPE path is exercised (not only
# single characters). Plain greedy BPE training: merge the most frequent adjacent pair.
TRAINING_WORDS = (
    "red orange yellow green cyan blue purple pink white black gray brown circle square triangle "
    "diamond cross ring star bar solid striped checkered dotted gradient speckled small medium large "
    "left right top bottom center background object objects one two three dog cat car tree sky grass"
).split()


def learn_merges(words, count):
    seqs = [list(w[:-1]) + [w[-1] + "</w>"] for w in words]
    merges = []
    for _ in range(count):
        pairs = {}
        for s in seqs:
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + 1
        if not pairs:
            break
        best = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        if pairs[best] < 2:
            break
        merges.append(best)
        new = []
        for s in seqs:
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            new.append(out)
        seqs = new
    return merges


def make_tokenizer():
    byte_chars = list(bytes_to_unicode().values())
    vocab_list = byte_chars + [c + "</w>" for c in byte_chars]
    merges = learn_merges(TRAINING_WORDS, 60)
    for a, b in merges:
        vocab_list.append(a + b)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]

    def added(tid, content):
        return {"id": tid, "content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": True}

    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(bos, "<|startoftext|>"), added(eos, "<|endoftext|>")],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "NFC"},
                {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
                {"type": "Lowercase"},
            ],
        },
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
                    "behavior": "Removed",
                    "invert": True,
                },
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": {
            "type": "RobertaProcessing",
            "sep": ["<|endoftext|>", eos],
            "cls": ["<|startoftext|>", bos],
            "trim_offsets": False,
            "add_prefix_space": False,
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<|endoftext|>",
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "</w>",
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }
    special = {
        "bos_token": {"content": "<|startoftext|>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
        "eos_token": {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
        "pad_token": "<|endoftext|>",
        "unk_token": {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
    }
    tokenizer_config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_POSITIONS,
        "do_lower_case": True,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "clean_up_tokenization_spaces": True,
        "errors": "replace",
        "add_prefix_space": False,
    }
    return tokenizer, tokenizer_config, special, len(vocab_list), bos, eos


# ---- graph building ----

class Graph:
    def __init__(self, prefix):
        self.nodes, self.inits, self.prefix, self.n = [], [], prefix, 0

    def name(self, hint):
        self.n += 1
        return f"{self.prefix}/{hint}_{self.n}"

    def const(self, hint, array):
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, hint=None, outputs=None, **attrs):
        outs = outputs or [self.name(hint or op_type)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs[0]

    def linear(self, x, fan_in, fan_out, hint, bias=True):
        y = self.op("MatMul", [x, self.const(f"{hint}.weight", rand(fan_in, fan_out, scale=fan_in ** -0.5))])
        return self.op("Add", [y, self.const(f"{hint}.bias", rand(fan_out, scale=0.02))]) if bias else y

    def layer_norm(self, x, hint):
        scale = self.const(f"{hint}.weight", np.ones(HIDDEN, np.float32) + rand(HIDDEN, scale=0.05))
        shift = self.const(f"{hint}.bias", rand(HIDDEN, scale=0.05))
        return self.op("LayerNormalization", [x, scale, shift], axis=-1, epsilon=1e-5)

    def heads(self, x):
        """[B, L, H] -> [B, heads, L, H/heads]"""
        r = self.op("Reshape", [x, self.const("heads_shape", np.array([0, 0, HEADS, HIDDEN // HEADS], np.int64))])
        return self.op("Transpose", [r], perm=[0, 2, 1, 3])

    def block(self, x, hint, causal_mask=None):
        """One pre-LN CLIP encoder layer."""
        h = self.layer_norm(x, f"{hint}.layer_norm1")
        q = self.heads(self.linear(h, HIDDEN, HIDDEN, f"{hint}.q_proj"))
        k = self.heads(self.linear(h, HIDDEN, HIDDEN, f"{hint}.k_proj"))
        v = self.heads(self.linear(h, HIDDEN, HIDDEN, f"{hint}.v_proj"))
        kt = self.op("Transpose", [k], perm=[0, 1, 3, 2])
        scores = self.op("MatMul", [q, kt])
        scores = self.op("Mul", [scores, self.const("attn_scale", np.array((HIDDEN // HEADS) ** -0.5, np.float32))])
        if causal_mask is not None:
            scores = self.op("Add", [scores, causal_mask])
        attn = self.op("Softmax", [scores], axis=-1)
        ctx = self.op("MatMul", [attn, v])
        ctx = self.op("Transpose", [ctx], perm=[0, 2, 1, 3])
        ctx = self.op("Reshape", [ctx, self.const("merge_shape", np.array([0, 0, HIDDEN], np.int64))])
        x = self.op("Add", [x, self.linear(ctx, HIDDEN, HIDDEN, f"{hint}.out_proj")])
        h = self.layer_norm(x, f"{hint}.layer_norm2")
        h = self.linear(h, HIDDEN, MLP, f"{hint}.fc1")
        # quick_gelu(x) = x * sigmoid(1.702 x), CLIP's activation
        gate = self.op("Sigmoid", [self.op("Mul", [h, self.const("gelu_k", np.array(1.702, np.float32))])])
        h = self.op("Mul", [h, gate])
        h = self.linear(h, MLP, HIDDEN, f"{hint}.fc2")
        return self.op("Add", [x, h])

    def model(self, inputs, outputs, name):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cm-tiny-clip")
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def text_model(vocab_size):
    g = Graph("text_model")
    ids = "input_ids"
    tok = g.op("Gather", [g.const("token_embedding", rand(vocab_size, HIDDEN)), ids], axis=0)
    # positions 0..L-1: slice the position table to the sequence length
    seq_len = g.op("Gather", [g.op("Shape", [ids]), g.const("one", np.array([1], np.int64))], axis=0)
    zero = g.const("zero", np.array([0], np.int64))
    pos = g.op("Slice", [g.const("position_embedding", rand(MAX_POSITIONS, HIDDEN)), zero, seq_len, zero])
    x = g.op("Add", [tok, pos])
    mask_full = np.triu(np.full((MAX_POSITIONS, MAX_POSITIONS), -1e9, np.float32), k=1)
    mask = g.op("Slice", [g.const("causal_mask", mask_full), g.const("zeros2", np.array([0, 0], np.int64)),
                          g.op("Concat", [seq_len, seq_len], axis=0), g.const("axes2", np.array([0, 1], np.int64))])
    x = g.block(x, "encoder.layers.0", causal_mask=mask)
    hidden = g.layer_norm(x, "final_layer_norm")
    g.op("Identity", [hidden], outputs=["last_hidden_state"])
    # pooled output: the hidden state at the first end-of-text token (the largest id), as HF CLIP
    eot = g.op("ArgMax", [g.op("Cast", [ids], to=TensorProto.FLOAT)], axis=-1, keepdims=1)
    pooled = g.op("GatherND", [hidden, eot], batch_dims=1)
    g.op("MatMul", [pooled, g.const("text_projection", rand(HIDDEN, PROJECTION, scale=HIDDEN ** -0.5))], outputs=["text_embeds"])
    return g.model(
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"])],
        [
            helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch_size", PROJECTION]),
            helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch_size", "sequence_length", HIDDEN]),
        ],
        "tiny_clip_text",
    )


def vision_model():
    g = Graph("vision_model")
    patches = g.op("Conv", ["pixel_values", g.const("patch_embedding", rand(HIDDEN, 3, PATCH, PATCH, scale=(3 * PATCH * PATCH) ** -0.5))],
                   kernel_shape=[PATCH, PATCH], strides=[PATCH, PATCH])
    patches = g.op("Reshape", [patches, g.const("flatten", np.array([0, HIDDEN, -1], np.int64))])
    patches = g.op("Transpose", [patches], perm=[0, 2, 1])  # [B, N, H]
    # class token broadcast to the batch: class_embedding + 0 * (a [B, 1, H] tensor)
    batch_zero = g.op("Mul", [g.op("ReduceMean", [patches], axes=[1], keepdims=1), g.const("zero_f", np.array(0, np.float32))])
    cls = g.op("Add", [batch_zero, g.const("class_embedding", rand(1, 1, HIDDEN))])
    x = g.op("Concat", [cls, patches], axis=1)
    n_tokens = (IMAGE_SIZE // PATCH) ** 2 + 1
    x = g.op("Add", [x, g.const("position_embedding", rand(n_tokens, HIDDEN))])
    x = g.layer_norm(x, "pre_layrnorm")
    x = g.block(x, "encoder.layers.0")
    g.op("Identity", [x], outputs=["last_hidden_state"])
    pooled = g.layer_norm(g.op("Gather", [x, g.const("cls_index", np.array(0, np.int64))], axis=1), "post_layernorm")
    g.op("MatMul", [pooled, g.const("visual_projection", rand(HIDDEN, PROJECTION, scale=HIDDEN ** -0.5))], outputs=["image_embeds"])
    return g.model(
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch_size", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [
            helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch_size", PROJECTION]),
            helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch_size", n_tokens, HIDDEN]),
        ],
        "tiny_clip_vision",
    )


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "libs", "probe", "test", "fixtures", "tiny-clip")
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    tokenizer, tokenizer_config, special, vocab_size, bos, eos = make_tokenizer()
    config = {
        "_name_or_path": "cm-tiny-random-clip",
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": PROJECTION,
        "logit_scale_init_value": 2.6592,
        "text_config": {
            "model_type": "clip_text_model", "vocab_size": vocab_size, "hidden_size": HIDDEN, "intermediate_size": MLP,
            "num_hidden_layers": 1, "num_attention_heads": HEADS, "max_position_embeddings": MAX_POSITIONS,
            "hidden_act": "quick_gelu", "projection_dim": PROJECTION, "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": eos,
        },
        "vision_config": {
            "model_type": "clip_vision_model", "hidden_size": HIDDEN, "intermediate_size": MLP, "num_hidden_layers": 1,
            "num_attention_heads": HEADS, "image_size": IMAGE_SIZE, "patch_size": PATCH, "num_channels": 3,
            "hidden_act": "quick_gelu", "projection_dim": PROJECTION,
        },
        "note": "tiny randomly initialised CLIP made by tools/clip-fixture/make_tiny_clip.py for tests; its embeddings mean nothing",
    }
    preprocessor = {
        "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_processor_type": "CLIPImageProcessor",
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": IMAGE_SIZE},
    }
    files = {
        "config.json": config,
        "preprocessor_config.json": preprocessor,
        "tokenizer.json": tokenizer,
        "tokenizer_config.json": tokenizer_config,
        "special_tokens_map.json": special,
    }
    for name, obj in files.items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.write("\n")
    onnx.save(text_model(vocab_size), os.path.join(out, "onnx", "text_model.onnx"))
    onnx.save(vision_model(), os.path.join(out, "onnx", "vision_model.onnx"))
    print(f"wrote tiny CLIP (vocab {vocab_size}, hidden {HIDDEN}, projection {PROJECTION}) to {os.path.abspath(out)}")


if __name__ == "__main__":
    main()
