// What the patient portal asks for: the patient's own record.
export const SCOPE = "openid fhirUser launch/patient patient/*.cruds";
