"""Speech/music classifier portfolio for the AutoSpeech 2019 setting: front ends and members."""
