"""A character-level LSTM language model (torch): read the input text, then
generate characters from it greedily. The input is JSON
{"text": T, "generate": N}; the output is the text's length, its mean
log-likelihood under the model and the N generated characters.

Debian ships no trained model, so the weights are drawn from a fixed seed
when the module is imported. The guest's result must equal the host's run
of the same image on another CPU: one thread (the order of every sum is
fixed) and an output that is rounded (3 decimals) or taken by argmax."""

import json

import torch

VOCAB = 128  # ASCII
EMBED, HIDDEN, LAYERS = 64, 128, 2
WEIGHTS_SEED, WEIGHTS_SCALE = 16, 3.0


class CharLSTM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, EMBED)
        self.lstm = torch.nn.LSTM(EMBED, HIDDEN, LAYERS)
        self.out = torch.nn.Linear(HIDDEN, VOCAB)

    def forward(self, x, state=None):
        h, state = self.lstm(self.embed(x).unsqueeze(1), state)
        return self.out(h.squeeze(1)), state


torch.set_num_threads(1)
# The weights' draws must not move the generator that requests use (the
# runner reseeds it after every restore).
with torch.random.fork_rng():
    torch.manual_seed(WEIGHTS_SEED)
    _model = CharLSTM().eval()
# At their initial scale the random weights make a model that repeats one
# character; three times larger, it wanders.
with torch.no_grad():
    for p in _model.parameters():
        p.mul_(WEIGHTS_SCALE)


def handle(data):
    req = json.loads(data)
    text = req["text"].encode("ascii", "replace")
    n = int(req["generate"])
    if len(text) < 2:
        raise ValueError("text: %d characters, want at least 2" % len(text))
    with torch.inference_mode():
        x = torch.tensor(list(text), dtype=torch.long)
        logits, state = _model(x)
        logp = torch.log_softmax(logits[:-1], dim=1).gather(1, x[1:].unsqueeze(1)).mean().item()
        c = logits[-1].argmax()
        out = []
        for _ in range(n):
            out.append(int(c))
            logits, state = _model(c.view(1), state)
            c = logits[-1].argmax()
    return b"%d %.3f %s" % (len(text), logp, bytes(out).hex().encode())
