import openai

import detcheck.testing

RECORDING = "gpt-4o-coinflip"  # ships with detcheck: rebuilt from published figures


def test_my_client_copes_with_recorded_nondeterminism(detcheck_replay):
    client = openai.OpenAI(base_url=detcheck_replay(RECORDING), api_key="unused")
    ask = dict(model="gpt-4o", messages=[{"role": "user", "content": "Flip a coin."}])
    replies = [
        client.chat.completions.create(**ask, max_tokens=1, logprobs=True) for _ in range(50)
    ]
    assert len({r.choices[0].logprobs.content[0].logprob for r in replies}) > 1
    detcheck.testing.assert_distinct_at_most(RECORDING, 42)
