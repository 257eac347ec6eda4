-- The bank database beside Rasa's tracker store on compose's PostgreSQL (run once, when the
-- data volume is new). Its tables come from `python -m assistant.bank migrate`
-- (compose's bank-migrate job), never from here.
CREATE DATABASE bank OWNER rasa;
